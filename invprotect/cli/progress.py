"""Progress for the command line: a rich bar on a terminal, plain lines in a log file or pipe.

`stages` shows a library run's progress (``progress(stage, done, total, status)``, one
task per stage) and its news lines; `training_processes` joins torchrun's process
group for a training command, with only rank 0 printing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from invprotect import distributed
from invprotect.device import pick_device
from invprotect.training.data import Listener

console = Console(stderr=True, soft_wrap=True)
"""Where progress and status go (stderr), keeping stdout for results."""

LINE_INTERVAL = 10.0
"""Plain progress prints a line at least this often (seconds) while a task advances ..."""

LINE_FRACTION = 0.05
"""... and whenever this fraction of the task is done since the last line (at most one a second)."""


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the exit (code 2, bad input) to raise."""
    console.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(2)


def progress_bar(plain: bool | None = None) -> Progress | PlainProgress:
    """Progress display: a rich bar on a terminal, else `PlainProgress` lines.

    Both take ``add_task(description, total=..., status=...)``, ``update(task, ...)`` and
    ``advance(task, n)``, and are context managers. Tasks may set a ``status`` field (for
    example the epoch and live losses) shown after the counts.

    Args:
        plain: Force plain lines (``True``) or the bar (``False``); ``None``: plain lines
            when stderr is not a terminal.
    """
    if plain if plain is not None else not console.is_terminal:
        return PlainProgress(console)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )


class Stages:
    """A progress display whose tasks are a run's stages, made by `stages`.

    `show` is the ``progress(stage, done, total, status)`` callback of the library runs
    (`invprotect.training.data.Progress`): a stage's first call adds its task. `log`
    prints a line of news above the display.
    """

    def __init__(self, bar: Progress | PlainProgress) -> None:
        self.bar = bar
        self._tasks: dict[str, Any] = {}

    def show(self, stage: str, done: int, total: int | None = None, status: str = "") -> None:
        """Show that ``done`` of ``total`` units of ``stage`` are done."""
        if stage not in self._tasks:
            self._tasks[stage] = self.bar.add_task(stage, total=total, status=status)
        self.bar.update(self._tasks[stage], completed=done, total=total, status=status)

    def log(self, message: str) -> None:
        """Print ``message`` as it is (no markup), above the display."""
        self.bar.console.print(message, markup=False, highlight=False)

    @property
    def listener(self) -> Listener:
        """`show` and `log` as the `invprotect.training.data.Listener` of a training run."""
        return Listener(self.show, self.log)


@contextmanager
def stages(plain: bool | None = None) -> Iterator[Stages]:
    """A `progress_bar` (``plain`` as there) whose tasks are named stages: see `Stages`."""
    with progress_bar(plain) as bar:
        yield Stages(bar)


@contextmanager
def training_processes(device: str) -> Iterator[torch.device]:
    """Join torchrun's process group for a training command; yields this rank's device.

    See `invprotect.distributed.process_group` (without torchrun: one process, the
    device of ``--device``). While the block runs, ranks other than 0 print nothing
    (rank 0 shows progress for all); a crash report after it is printed by every rank.

    Raises:
        typer.Exit: With code 2 if there are more processes than GPUs.
    """
    with ExitStack() as stack:
        try:
            chosen = stack.enter_context(distributed.process_group(pick_device(device)))
        except ValueError as error:  # more processes than GPUs
            raise fail(str(error)) from None
        console.quiet = not distributed.is_main()
        try:
            yield chosen
        finally:
            console.quiet = False


@dataclass
class _Task:
    description: str
    total: float | None
    status: str
    started: float
    completed: float = 0.0
    first: tuple[float, float] | None = None
    last_time: float | None = None
    last_completed: float = 0.0


class PlainProgress:
    """Progress as plain lines: stage, done/total, percentage, rate, elapsed time, ETA, status.

    A line is printed at a task's first update, then at least every `LINE_INTERVAL`
    seconds and whenever `LINE_FRACTION` more of it is done (at most once a second), and
    when it completes. Meant for logs: every line stands alone. The rate (and so the
    ETA) is measured from the first update, so work done before a resume does not count.

    Args:
        console: Where the lines go.
        interval: Seconds between lines of a task that advances slowly.
        fraction: Share of a task's total after which a line is printed anyway.
        clock: Source of seconds (for tests).
    """

    def __init__(
        self,
        console: Console,
        interval: float = LINE_INTERVAL,
        fraction: float = LINE_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.interval = interval
        self.fraction = fraction
        self._clock = clock
        self._tasks: list[_Task] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        """Start a task; returns its id for `update` and `advance`."""
        status = str(fields.get("status", ""))
        self._tasks.append(_Task(description, total, status, self._clock()))
        return len(self._tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        """Count ``advance`` more units done."""
        self.update(task, advance=advance)

    def update(
        self,
        task: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        **fields: Any,
    ) -> None:
        """Change a task's total, done count (absolute or relative) or status; maybe print."""
        state = self._tasks[task]
        if total is not None:
            state.total = total
        if completed is not None:
            state.completed = completed
        if advance is not None:
            state.completed += advance
        if "status" in fields:
            state.status = str(fields["status"])
        now = self._clock()
        if state.first is None:
            state.first = (now, state.completed)
        if self._due(state, now):
            self.console.print(self._line(state, now))
            state.last_time, state.last_completed = now, state.completed

    def _due(self, state: _Task, now: float) -> bool:
        if state.last_time is None:
            return True
        finished = state.total is not None and state.completed >= state.total
        if finished:
            return state.last_completed < state.completed
        waited = now - state.last_time
        step = self.fraction * (state.total or 0)
        moved = bool(step) and state.completed - state.last_completed >= step
        return waited >= self.interval or (moved and waited >= 1.0)

    def _line(self, state: _Task, now: float) -> str:
        elapsed = now - state.started
        since, first_completed = state.first or (now, state.completed)
        done = state.completed - first_completed
        rate = done / (now - since) if now > since and done > 0 else None
        parts = [f"{state.description}: {_count(state.completed)}"]
        if state.total:
            parts[0] += f"/{_count(state.total)} ({100 * state.completed / state.total:.0f}%)"
        if rate is not None:
            parts.append(f"{rate:.3g}/s" if rate >= 1 else f"{1 / rate:.3g} s each")
        parts.append(f"elapsed {_clock_time(elapsed)}")
        if rate is not None and state.total and state.completed < state.total:
            parts.append(f"ETA {_clock_time((state.total - state.completed) / rate)}")
        line = ", ".join(parts)
        return f"{line} | {state.status}" if state.status else line


def _count(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _clock_time(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
