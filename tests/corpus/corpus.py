"""The frame of the bad-input corpus: `Case`, `Scenario`, `Ctx`, the registry and shared checks.

Every `Case` builds its inputs in an empty folder (from code: the repository holds no
binary test files) and says how ``invprotect`` must end: exit code 0 (all done), 1 (some
files failed, each one named) or 2 (bad usage or a fatal problem, nothing done), never 3
(a crash) and never a traceback. The cases themselves live in the ``cases_*`` modules;
`tests.corpus.make_corpus` collects them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.corpus import files as f
from tests.corpus.kit import OTHER_MODES, Kit, Outcome

OK, FAILED, FATAL = 0, 1, 2
MANIFEST = "manifest.jsonl"


@dataclass
class Scenario:
    """The inputs of one case, ready to run, and what to check beyond the exit code.

    Attributes:
        args: The ``invprotect`` arguments.
        dst: The only place the command may write (``None``: nowhere).
        sources: For ``protect``: the tree whose every file must be protected (listed in
            the manifest) or named in the output.
        roundtrip: For ``protect``: recover the destination with this protector and
            check every protected file against its source, bit for bit.
        originals: For ``recover``: output path (relative to ``dst``) -> original file;
            each must come back bit for bit, except those in ``damaged``.
        damaged: Output paths of files that cannot come back exactly: each must be named.
        must_name: Words that must appear in the output (file names, "key", ...).
        check: More checks after the run; returns the problems found.
        time_limit: Seconds the run may take.
        memory_cap_mb: Address space the run may add (larger allocations fail at once).
        heap_limit_mb: Peak of Python allocations allowed (traced; for inflation limits).
        run: Runs the command instead of the in-process CLI (a subprocess, a kill).
    """

    args: list[str]
    dst: Path | None
    sources: Path | None = None
    roundtrip: Path | None = None
    originals: dict[str, Path] = field(default_factory=dict)
    damaged: tuple[str, ...] = ()
    must_name: tuple[str, ...] = ()
    check: Callable[[Outcome], list[str]] | None = None
    time_limit: float | None = None
    memory_cap_mb: int | None = None
    heap_limit_mb: float | None = None
    run: Callable[[], Outcome] | None = None


@dataclass(frozen=True)
class Case:
    """One kind of bad input.

    Attributes:
        name: Short unique id.
        exit_codes: The acceptable exit codes (more than one where the issue leaves the
            choice open, for example a still GIF may be protected or refused).
        build: Makes the inputs in a `Ctx`'s folder and returns the `Scenario`.
        outcome: The expected outcome in words.
        needs_non_root: Permissions cannot be taken from root (who reads everything).
    """

    name: str
    exit_codes: tuple[int, ...]
    build: Callable[[Ctx], Scenario]
    outcome: str
    needs_non_root: bool = False


class Ctx:
    """Where one case builds its inputs: ``root`` (empty at first) and the shared `Kit`."""

    def __init__(self, kit: Kit, root: Path) -> None:
        self.kit = kit
        self.root = root
        self.src = root / "src"
        self.dst = root / "dst"

    def good(self, folder: Path | None = None, name: str = "good.png", seed: int = 0) -> Path:
        """An ordinary 8x8 RGB PNG (default ``src/good.png``)."""
        return f.write((folder or self.src) / name, f.rgb(8, 8, seed))

    def protect(self, *extra: str, src: Path | None = None, dst: Path | None = None) -> list[str]:
        """``protect SRC DST --protector P EXTRA``."""
        args = ["protect", str(src or self.src), str(dst or self.dst)]
        if "--protector" not in extra:
            args += ["--protector", str(self.kit.protector)]
        return [*args, *extra]

    def recover(self, *extra: str, src: Path | None = None, dst: Path | None = None) -> list[str]:
        """``recover SRC DST --protector P EXTRA`` (default SRC ``prt``, DST ``rec``)."""
        args = ["recover", str(src or self.root / "prt"), str(dst or self.root / "rec")]
        if "--protector" not in extra:
            args += ["--protector", str(self.kit.protector)]
        return [*args, *extra]

    def pool(self, count: int = 5, modes: bool = True) -> dict[str, Path]:
        """Copy ``count`` protected RGB files (and the other modes) to ``prt`` with their manifest.

        Returns:
            Output name -> original file, for `Scenario.originals`.
        """
        names = [f"img{index:02d}.png" for index in range(count)] + list(
            OTHER_MODES if modes else []
        )
        prt = self.root / "prt"
        prt.mkdir()
        for name in names:
            shutil.copy(self.kit.protected / name, prt / name)
        lines = (self.kit.protected / MANIFEST).read_text().splitlines()
        kept = [line for line in lines if json.loads(line).get("path") in names]
        (prt / MANIFEST).write_text("".join(line + "\n" for line in kept))
        return {name: self.kit.originals / name for name in names}

    def protector_copy(self) -> Path:
        """A copy of the corpus protector in ``root/protector`` (to damage)."""
        return Path(shutil.copytree(self.kit.protector, self.root / "protector"))


CASES: list[Case] = []


def case(
    name: str, exit_codes: int | tuple[int, ...], outcome: str, needs_non_root: bool = False
) -> Callable[[Callable[[Ctx], Scenario]], Callable[[Ctx], Scenario]]:
    """Register a case built by the decorated function."""
    codes = exit_codes if isinstance(exit_codes, tuple) else (exit_codes,)

    def register(build: Callable[[Ctx], Scenario]) -> Callable[[Ctx], Scenario]:
        if any(existing.name == name for existing in CASES):
            raise ValueError(f"duplicate case {name}")
        CASES.append(Case(name, codes, build, outcome, needs_non_root))
        return build

    return register


def truncated(data: bytes) -> bytes:
    """The first half of ``data``."""
    return data[: len(data) // 2]


def protected_count(
    ctx: Ctx, count: int, where: Path | None = None
) -> Callable[[Outcome], list[str]]:
    """A check: ``count`` protected PNGs in ``where`` (default DST)."""

    def check(_: Outcome) -> list[str]:
        found = [p for p in (where or ctx.dst).rglob("*.png") if not p.name.startswith(".")]
        return [] if len(found) == count else [f"expected {count} protected file(s), found {found}"]

    return check


def recovered_count(ctx: Ctx, count: int) -> Callable[[Outcome], list[str]]:
    """A check: ``count`` recovered PNGs in ``rec``."""

    def check(_: Outcome) -> list[str]:
        rec = ctx.root / "rec"
        found = (
            [p for p in rec.rglob("*.png") if not p.name.startswith(".")] if rec.is_dir() else []
        )
        return (
            []
            if len(found) == count
            else [f"expected {count} recovered file(s), found {len(found)}"]
        )

    return check


def no_tmp(folder: Path) -> Callable[[Outcome], list[str]]:
    """A check: no ``*.tmp`` file left in ``folder``."""

    def check(_: Outcome) -> list[str]:
        left = [p.name for p in folder.rglob("*.tmp")]
        return [f"stale temporary files left: {left}"] if left else []

    return check


def manifest_entries(folder: Path) -> list[dict[str, Any]]:
    """The well-formed lines of ``folder/manifest.jsonl`` (objects with a string ``path``)."""
    path = folder / MANIFEST
    entries = []
    if path.is_file():
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                    entries.append(entry)
    return entries


def unique_manifest(folder: Path) -> Callable[[Outcome], list[str]]:
    """A check: no file listed twice in ``folder/manifest.jsonl``."""

    def check(_: Outcome) -> list[str]:
        paths = [entry["path"] for entry in manifest_entries(folder)]
        twice = len(paths) - len(set(paths))
        return [f"the manifest lists {twice} file(s) twice"] if twice else []

    return check
