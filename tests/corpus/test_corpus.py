"""Every case of the bad-input corpus through the real ``invprotect`` command line.

For each case (see `tests.corpus.make_corpus`) the test checks:

* the exit code is one the case allows (3, a crash, never is), and no exception escaped;
* no Python traceback in the output;
* no file outside the destination changed, appeared or vanished (content, mtime and mode
  of everything in the case's folder and in the shared kit, before and after), so no
  source was modified;
* nothing lost silently: after ``protect``, every file of the source is in the manifest
  or named in the output, and every protected file recovers bit for bit; after
  ``recover``, every undamaged file is back bit for bit and every damaged one is named;
* after exit code 2, no image was written;
* the case's own checks (time, memory, messages, what may not be written).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.corpus.corpus import FATAL, Case, Ctx, Scenario, manifest_entries
from tests.corpus.files import same_pixels, write
from tests.corpus.kit import (
    TRACEBACK,
    Kit,
    Outcome,
    Snapshot,
    address_space_cap,
    python_heap_peak,
    run_cli,
    snapshot,
)
from tests.corpus.make_corpus import CASES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return Kit.build(tmp_path_factory.mktemp("corpus-kit"))


def _params() -> list:
    root_skip = pytest.mark.skipif(
        IS_ROOT,
        reason="runs as root, who reads and writes files whatever their permissions, so a "
        "chmod cannot make an input unreadable or a folder read-only",
    )
    return [
        pytest.param(item, id=item.name, marks=[root_skip] if item.needs_non_root else [])
        for item in CASES
    ]


def test_the_corpus_has_more_than_100_distinct_kinds() -> None:
    names = [item.name for item in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 100, len(CASES)


def test_the_checks_see_a_changed_source_a_stray_file_and_an_unnamed_one(tmp_path: Path) -> None:
    write(tmp_path / "src" / "a.png", b"original")
    before = snapshot(tmp_path)
    write(tmp_path / "src" / "a.png", b"changed!")
    write(tmp_path / "stray.txt", b"x")
    write(tmp_path / "dst" / "a.png", b"protected")
    scenario = Scenario([], tmp_path / "dst", sources=tmp_path / "src")
    outcome = Outcome(0, "protected 0 files", None, 0.0)
    problems = _write_problems(tmp_path, scenario, before, snapshot(tmp_path), outcome)
    assert problems == [
        "changed outside the destination: src/a.png",
        "created outside the destination: stray.txt",
    ]
    assert _unlisted_sources(scenario, outcome) == [
        "silent loss: 'a.png' neither protected nor named"
    ]
    assert _named("failed latin1_caf\\xe9.png: empty", "latin1_caf\udce9.png")


@pytest.mark.parametrize("item", _params())
def test_bad_input(item: Case, kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "case"
    root.mkdir()
    scenario = item.build(Ctx(kit, root))
    monkeypatch.chdir(root)  # anything written to the working folder is caught too
    before, kit_before = snapshot(root), snapshot(kit.root)
    heap: list[float] = []
    with contextlib.ExitStack() as stack:
        if scenario.memory_cap_mb:
            stack.enter_context(address_space_cap(scenario.memory_cap_mb))
        if scenario.heap_limit_mb:
            stack.enter_context(python_heap_peak(heap))
        outcome = scenario.run() if scenario.run else run_cli(scenario.args)
    problems = _run_problems(item, scenario, outcome, heap)
    after = snapshot(root)
    problems += _write_problems(root, scenario, before, after, outcome)
    if snapshot(kit.root) != kit_before:
        problems.append("the shared protector or pool changed")
    if outcome.code in (0, 1):
        problems += _loss_problems(root, scenario, outcome)
    if scenario.check is not None:
        problems += scenario.check(outcome)
    if problems:
        tail = "\n".join(outcome.output.strip().splitlines()[-15:])
        pytest.fail(
            f"{item.name} ({item.outcome}): "
            + "; ".join(problems)
            + f"\n$ invprotect {' '.join(scenario.args)}\n--- output (last lines) ---\n{tail}"
            + (f"\n--- escaped exception ---\n{outcome.error}" if outcome.error else ""),
            pytrace=False,
        )


def _run_problems(item: Case, scenario: Scenario, outcome: Outcome, heap: list[float]) -> list[str]:
    problems = []
    if outcome.error is not None:
        last = outcome.error.strip().splitlines()[-1]
        problems.append(f"crashed: an exception escaped the CLI ({last})")
    if TRACEBACK in outcome.output:
        problems.append("a Python traceback in the output")
    if outcome.code == 3:
        problems.append("exit code 3 (a crash)")
    elif outcome.code is not None and outcome.code not in item.exit_codes:
        problems.append(
            f"exit code {outcome.code}, expected {' or '.join(map(str, item.exit_codes))}"
        )
    for word in scenario.must_name:
        if not _named(outcome.output, word):
            problems.append(f"{word!r} not named in the output")
    if scenario.time_limit and outcome.seconds > scenario.time_limit:
        problems.append(f"took {outcome.seconds:.1f} s (limit {scenario.time_limit} s)")
    if scenario.heap_limit_mb and heap and heap[0] > scenario.heap_limit_mb:
        problems.append(
            f"Python allocations peaked at {heap[0]:.0f} MB (limit {scenario.heap_limit_mb})"
        )
    return problems


def _named(output: str, name: str) -> bool:
    """Whether ``name`` shows in the output (for odd names: its longest plain-ASCII part)."""
    flat = output.replace("\n", "")
    if name in output or name in flat:
        return True
    if name.isascii() and name.isprintable():
        return False
    parts = sorted(re.findall(r"[A-Za-z0-9_-]{3,}", name), key=len, reverse=True)
    return bool(parts) and parts[0] in flat


def _inside(path: bytes, area: bytes) -> bool:
    return path == area or path.startswith(area.rstrip(b"/") + b"/")


def _write_problems(
    root: Path, scenario: Scenario, before: Snapshot, after: Snapshot, outcome: Outcome
) -> list[str]:
    """Changes outside ``scenario.dst``; after exit code 2, images written inside it."""
    dst = os.path.relpath(os.fsencode(scenario.dst), os.fsencode(root)) if scenario.dst else None
    problems = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) == after.get(path):
            continue
        shown = os.fsdecode(path)
        if dst is not None and _inside(path, dst):
            if outcome.code == FATAL and path.lower().endswith(
                tuple(s.encode() for s in IMAGE_SUFFIXES)
            ):
                if not os.path.basename(path).startswith(b"."):
                    problems.append(f"exited 2 but wrote {shown}")
            continue
        is_dir_ancestor = (
            dst is not None and _inside(dst, path) and (after.get(path, ("dir",))[0] == "dir")
        )
        if is_dir_ancestor:  # making DST's parents (or DST) changes their mtime
            continue
        what = "removed" if path not in after else "created" if path not in before else "changed"
        problems.append(f"{what} outside the destination: {shown}")
    return problems


def _loss_problems(root: Path, scenario: Scenario, outcome: Outcome) -> list[str]:
    problems = []
    if scenario.sources is not None and scenario.dst is not None:
        problems += _unlisted_sources(scenario, outcome)
        if scenario.roundtrip is not None:
            problems += _roundtrip(root, scenario)
    for name, original in scenario.originals.items():
        if name in scenario.damaged:
            continue
        recovered = scenario.dst / name
        if not recovered.is_file():
            problems.append(f"{name} was not recovered")
            continue
        try:
            difference = same_pixels(Image.open(original), Image.open(recovered))
        except OSError as error:
            difference = f"unreadable ({error})"
        if difference:
            problems.append(f"{name} not recovered bit for bit: {difference}")
    return problems


def _unlisted_sources(scenario: Scenario, outcome: Outcome) -> list[str]:
    """Files of the source neither in the manifest nor named in the output."""
    listed = {entry["path"] for entry in manifest_entries(scenario.dst)}
    base = os.fsencode(scenario.sources)
    skip = os.fsencode(scenario.dst)
    problems = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not _inside(os.path.join(folder, d), skip)]
        entries = list(files)
        for name in dirs:
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.access(full, os.R_OK | os.X_OK):
                entries.append(name)  # not walked into: must be listed under it, or named
        for name in entries:
            full = os.path.join(folder, name)
            relative = os.fsdecode(os.path.relpath(full, base))
            if relative in listed or any(p.startswith(relative + "/") for p in listed):
                continue
            if not _reported(outcome.output, relative):
                problems.append(f"silent loss: {relative!r} neither protected nor named")
    return problems


def _reported(output: str, relative: str) -> bool:
    """Whether the output names the file, or a folder it lies in (reported as skipped)."""
    parts = relative.split("/")
    candidates = [parts[-1]] + ["/".join(parts[:end]) for end in range(len(parts), 0, -1)]
    return any(_named(output, candidate) for candidate in candidates)


def _roundtrip(root: Path, scenario: Scenario) -> list[str]:
    """Recover DST and compare every manifest entry with its source."""
    entries = manifest_entries(scenario.dst)
    if not entries:
        return []
    target = root / "roundtrip"
    back = run_cli(
        ["recover", str(scenario.dst), str(target), "--protector", str(scenario.roundtrip)]
    )
    problems = []
    if back.error is not None or TRACEBACK in back.output or back.code == 3:
        problems.append(
            f"recovering the protected files crashed: {back.error or back.output[-300:]}"
        )
    for entry in entries:
        source = scenario.sources / entry["path"]
        if not (source.is_file() and source.resolve().is_relative_to(scenario.sources.resolve())):
            continue  # a line a case wrote by hand, not a protected file
        recovered = target / str(entry.get("output", ""))
        if not recovered.is_file():
            problems.append(f"{entry['path']} protected but not recovered ({back.output[-200:]!r})")
            continue
        try:
            difference = same_pixels(Image.open(source), Image.open(recovered))
        except OSError as error:
            difference = f"unreadable ({error})"
        if difference:
            problems.append(
                f"{entry['path']} protected, but recovery is not bit for bit: {difference}"
            )
    return problems
