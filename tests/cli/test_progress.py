"""Plain progress lines, for logs and pipes: when they come and what they say."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from invprotect.cli.progress import PlainProgress, progress_bar, stages


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress() -> tuple[PlainProgress, Clock, io.StringIO]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, width=300, color_system=None)
    return PlainProgress(console, interval=10.0, fraction=0.05, clock=clock), clock, out


def test_lines_at_the_start_every_5_percent_every_10_s_and_at_the_end() -> None:
    bar, clock, out = _progress()
    task = bar.add_task("protector", total=200, status="")
    for step in range(1, 201):
        clock.now = step * 0.5  # 2 steps a second: 5% (10 steps) every 5 s
        bar.update(task, completed=step, status=f"epoch 1/1, loss {1 / step:.3f}")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("protector: 1/200 (0%)")
    assert lines[-1].startswith("protector: 200/200 (100%)") and "ETA" not in lines[-1]
    assert len(lines) == 1 + 19 + 1  # the first step, every 10 steps (5 s), the last
    middle = lines[10]
    assert middle.startswith("protector: 101/200 (50%), 2/s, elapsed 0:00:50, ETA 0:00:50")
    assert middle.endswith("| epoch 1/1, loss 0.010")


def test_a_slow_task_prints_every_interval_and_a_fast_one_not_every_step() -> None:
    bar, clock, out = _progress()
    task = bar.add_task("target vgg_small", total=10_000, status="")
    for step in range(1, 31):
        clock.now = step * 2.0  # 0.3% in a minute: lines come from the 10 s interval
        bar.advance(task)
    assert len(out.getvalue().splitlines()) == 1 + 5
    assert "2 s each" in out.getvalue().splitlines()[-1]
    fast, clock, out = _progress()
    task = fast.add_task("decoding", total=1000, status="")
    for step in range(1, 1001):
        clock.now = step * 0.001
        fast.advance(task)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("decoding: 1000/1000 (100%)")


def test_a_resumed_task_measures_its_rate_from_its_first_update() -> None:
    bar, clock, out = _progress()
    task = bar.add_task("protector", total=600, status="")
    clock.now = 1.0
    bar.update(task, completed=401)
    clock.now = 101.0
    bar.update(task, completed=501)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("protector: 501/600 (84%), 1/s, elapsed 0:01:41, ETA 0:01:39")


def test_plain_lines_when_stderr_is_not_a_terminal() -> None:
    assert isinstance(progress_bar(), PlainProgress)  # pytest captures stderr
    assert not isinstance(progress_bar(plain=False), PlainProgress)


def test_stages_give_each_stage_a_task_and_print_news_as_it_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with stages(plain=True) as shown:
        shown.show("decoding", 5, 10)
        shown.listener.progress("training", 1, 4, "loss 0.5")
        shown.listener.log("skipped [red]x.png[/]: no image")
        shown.show("decoding", 10, 10)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("decoding: 5/10 (50%)")
    assert lines[1].startswith("training: 1/4 (25%)") and lines[1].endswith("| loss 0.5")
    assert lines[2] == "skipped [red]x.png[/]: no image"  # no markup: printed as it is
    assert lines[3].startswith("decoding: 10/10 (100%)")
