"""Progress bars for the command line (rich)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, soft_wrap=True)
"""Where progress and status go (stderr), keeping stdout for results."""


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error and return the exit (code 2, bad input) to raise."""
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(2)


def progress_bar() -> Progress:
    """A progress bar with description, count, elapsed and remaining time, and a status field.

    Tasks may set a ``status`` field (for example live losses) shown after the bar.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    )
