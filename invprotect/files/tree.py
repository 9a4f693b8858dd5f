"""Walking a tree of images for a run: jobs, destination, batches, report.

The one tree walker of protect, recover and purify. `scan_tree` lists the image files
under SRC with their PNG outputs under DST (relative paths kept) and says why every other
entry is left out; `checked_paths` refuses a missing SRC and a DST that overlaps it;
`destination` holds DST's lock while a run works and removes the temporary files of an
interrupted one; `batches` cuts the jobs into runs that bound memory; `TreeReport` is
what every run returns. Links inside the destination are never written through
(`unsafe_output`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from invprotect.files.atomic import atomic_write_bytes, remove_stale_temporaries
from invprotect.files.images import IMAGE_SUFFIXES
from invprotect.files.locks import DestinationError, acquire_lock
from invprotect.files.manifest import bookkeeping_names, manifest_part
from invprotect.sharding import Shard
from invprotect.tiles import PIXEL_BUDGET, by_budget


@dataclass(frozen=True)
class Job:
    """One input file, its path relative to the source root, and its output file."""

    source: Path
    relative: str
    output: Path

    @property
    def label(self) -> str | None:
        """The file's class in an ImageFolder: its top folder under SRC (``None`` at the top)."""
        parts = self.relative.split("/")
        return parts[0] if len(parts) > 1 else None


@dataclass
class TreeScan:
    """What `scan_tree` found.

    Attributes:
        jobs: The image files to process.
        failed: ``(relative path, reason)`` of entries that cannot be processed
            (unreadable folders, broken links, special files, outputs shared by two inputs).
        skipped: ``(relative path, reason)`` of entries deliberately left alone (files
            that are not images, hidden files and files in hidden folders, links to
            folders).
        linked: ``(relative path, note)`` of jobs that are links to files outside ``src``
            (read through the link, and worth a word).
    """

    jobs: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    linked: list[tuple[str, str]] = field(default_factory=list)

    def of_shard(self, shard: Shard) -> TreeScan:
        """The jobs and entries that ``shard`` owns."""
        return TreeScan(
            [job for job in self.jobs if shard.owns(job.relative)],
            *(
                [entry for entry in entries if shard.owns(entry[0])]
                for entries in (self.failed, self.skipped, self.linked)
            ),
        )


def paths_overlap(a: Path, b: Path) -> bool:
    """Whether one of two (absolute) paths is, or lies inside, the other."""
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def output_root(src: Path, dst: Path) -> Path:
    """The folder a run writes into: ``dst``, or its parent for one file to a ``.png`` name."""
    if src.is_file() and dst.suffix.lower() == ".png" and not dst.is_dir():
        return dst.parent
    return dst


def scan_tree(
    src: Path, dst: Path, ignore: frozenset[str] = frozenset(), shard: Shard | None = None
) -> TreeScan:
    """The image files under ``src`` (or ``src`` itself) with their PNG outputs under ``dst``.

    Links to folders are not followed. ``ignore`` holds paths relative to ``src`` that
    are left out without a word (such as the manifest of a protected tree). With
    ``shard``, only the jobs and entries that shard owns (outputs shared by two inputs
    are found over the whole tree first).
    """
    if shard is not None:
        return scan_tree(src, dst, ignore).of_shard(shard)
    scan = TreeScan()
    if src.is_file():
        output = dst if output_root(src, dst) != dst else dst / f"{src.stem}.png"
        scan.jobs.append(Job(src, src.name, output))
        return scan
    if not src.is_dir():
        scan.failed.append((src.name, "not a regular file or folder (or a broken link)"))
        return scan

    def unreadable(error: OSError) -> None:
        where = Path(error.filename or src)
        relative = where.relative_to(src).as_posix() if where.is_relative_to(src) else str(where)
        scan.failed.append((relative or ".", f"cannot read this folder ({error.strerror})"))

    files = []
    for folder, folders, names in os.walk(src, onerror=unreadable):
        base = Path(folder)
        hidden = any(part.startswith(".") for part in base.relative_to(src).parts)
        folders.sort()
        for name in list(folders):
            if (base / name).is_symlink():
                relative = (base / name).relative_to(src).as_posix()
                scan.skipped.append((relative, "link to a folder, not followed"))
                folders.remove(name)
        for name in sorted(names):
            path = base / name
            relative = path.relative_to(src).as_posix()
            if relative in ignore:
                continue
            problem = ("skipped", "in a hidden folder") if hidden else _file_problem(path, name)
            if problem is None:
                files.append(path)
            else:
                kind, reason = problem
                (scan.skipped if kind == "skipped" else scan.failed).append((relative, reason))
    claimed: dict[Path, str] = {}
    for path in sorted(files):
        relative = path.relative_to(src).as_posix()
        if path.is_symlink() and not path.resolve().is_relative_to(src):
            scan.linked.append((relative, f"a link to {path.resolve()}, outside SRC"))
        output = dst / Path(relative).with_suffix(".png")
        if output in claimed:
            scan.failed.append(
                (relative, f"its output {output} is already the output of {claimed[output]}")
            )
            continue
        claimed[output] = relative
        scan.jobs.append(Job(path, relative, output))
    return scan


def _file_problem(path: Path, name: str) -> tuple[str, str] | None:
    """Why a directory entry is no image job: ``("skipped" or "failed", reason)``."""
    if name.startswith("."):
        return "skipped", "hidden file"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        kind = f"suffix {path.suffix}" if path.suffix else "no suffix"
        return "skipped", f"not an image file ({kind})"
    if path.is_symlink() and not path.exists():
        return "failed", "broken symbolic link"
    if not path.is_file():
        return "failed", "not a regular file"
    return None


@dataclass
class TreeReport:
    """The outcome of a tree run (protect, recover or purify).

    Attributes:
        written: Images processed in this run.
        skipped: Images already finished by an earlier run (and checked).
        failed: ``(relative path, reason)`` of files that could not be processed.
        altered: Relative paths of protected files that were changed after protection
            (recovered approximately).
        mismatched: Relative paths whose recovery does not match the recorded original.
        approximate: Relative paths of untouched files that the protector recovers only
            approximately by design (RAE when its perturbation did not fit).
        skipped_files: ``(relative path, reason)`` of entries left alone on purpose (not
            images, hidden, links to folders); they do not make the run fail.
        warnings: Things the run repaired, ignored or wants to mention (manifest lines,
            stale temporary files, outputs redone, links to files outside SRC); they do
            not make the run fail.
    """

    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    approximate: list[str] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed and no recovery mismatched (the exit status 0)."""
        return not self.failed and not self.mismatched


@dataclass
class RunStart:
    """What a tree run starts from: resolved paths, its jobs and a report to fill."""

    src: Path
    root: Path
    shard: Shard | None
    scan: TreeScan
    report: TreeReport


def start_run(
    src: Path,
    dst: Path,
    shard: Shard | None,
    started: Callable[[int], None] | None = None,
    protected_src: bool = False,
) -> RunStart:
    """Check the paths and scan SRC: the common start of protect and recover.

    Args:
        src: The source file or folder.
        dst: The destination (see `checked_paths`).
        shard: The run's shard; one of one counts as none.
        started: Called with the number of jobs.
        protected_src: SRC is a destination of protect: its manifest, parts and lock
            files are left out without a word.

    Raises:
        ValueError: If SRC does not exist.
        DestinationError: If DST overlaps SRC.
    """
    shard = None if shard is None or shard.count == 1 else shard
    src, dst, root = checked_paths(src, dst)
    ignore = bookkeeping_names(src) if protected_src else frozenset()
    scan = scan_tree(src, dst, ignore=ignore, shard=shard)
    if started is not None:
        started(len(scan.jobs))
    report = TreeReport(failed=list(scan.failed), skipped_files=list(scan.skipped))
    report.warnings += [f"{relative}: {note}" for relative, note in scan.linked]
    return RunStart(src, root, shard, scan, report)


def batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    """Runs of at most ``size`` jobs and `PIXEL_BUDGET` pixels (a larger image alone)."""
    return by_budget(jobs, _header_pixels, PIXEL_BUDGET, size)


def _header_pixels(job: Job) -> int:
    """Pixels of a job's image from its header (0 for a file that will fail when read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the read refuses it
            with Image.open(job.source) as image:
                return image.width * image.height
    except Exception:  # PIL raises many kinds on hostile data; the read reports it
        return 0


def checked_paths(src: Path, dst: Path) -> tuple[Path, Path, Path]:
    """Absolute SRC, DST and output root, refusing a missing SRC and any overlap.

    Raises:
        ValueError: If SRC does not exist.
        DestinationError: If the output root is, contains or lies inside SRC.
    """
    if not os.path.lexists(src):
        raise ValueError(f"{src.resolve()} does not exist")
    if dst.is_symlink() and not dst.exists():
        raise DestinationError(f"DST {dst} is a broken symbolic link; give a folder")
    src, dst = src.resolve(), dst.resolve()
    root = output_root(src, dst)
    if paths_overlap(src, root):
        raise DestinationError(
            f"DST {root} must not be SRC or lie inside it (or contain it): outputs and the "
            f"manifest would land among the originals of {src}; give a separate folder"
        )
    return src, dst, root


@contextlib.contextmanager
def destination(
    root: Path, report: TreeReport, shard: Shard | None = None, outputs: Iterable[Path] = ()
) -> Iterator[None]:
    """Create ``root``, hold its lock and remove stale temporary files while the run works.

    On exit the lock is released and ``root`` removed again if this run created it and
    wrote nothing into it. A ``shard`` holds its own lock and removes only the temporary
    files of its ``outputs`` and of its manifest part.

    Raises:
        DestinationError: If ``root`` is a file, cannot be created or written, or is
            locked by another run.
    """
    existed = root.exists()
    if existed and not root.is_dir():
        raise DestinationError(f"DST {root} exists and is not a folder; give a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DestinationError(f"cannot create DST {root}: {error.strerror}") from None
    lock = acquire_lock(root, shard)
    try:
        targets = None if shard is None else {*outputs, root / manifest_part(shard)}
        stale = remove_stale_temporaries(root, targets)
        if stale:
            report.warnings.append(f"removed {len(stale)} temporary files of an interrupted run")
        yield
    finally:
        lock.unlink(missing_ok=True)
        if not existed:
            with contextlib.suppress(OSError):
                root.rmdir()  # only succeeds when nothing was written


def unsafe_output(root: Path, output: Path) -> str | None:
    """Why writing ``output`` could leave ``root`` or hit something not ours, if it could."""
    path = root
    for part in output.relative_to(root).parts:
        path = path / part
        if path.is_symlink():
            return f"{path} is a symbolic link; invprotect never writes through links"
    if output.exists() and not output.is_file():
        return f"{output} exists and is not a regular file"
    return None


def write_output(job: Job, data: bytes, report: TreeReport) -> bool:
    """Write one output atomically; a write that fails fails its file only."""
    try:
        atomic_write_bytes(job.output, data)
    except OSError as error:
        report.failed.append(
            (job.relative, f"cannot write {job.output}: {error.strerror or error}")
        )
        return False
    return True
