"""Protect and recover whole trees of image files: batches, manifest, resume, bad files.

Outputs keep the relative paths of the source tree (as PNG) and are written atomically.
The destination must not overlap the source (for a single file: must not be, or contain,
the file), so originals are never touched and the manifest never lands among them. Links
inside the destination are never written through.

One run at a time per destination: a lock file (`LOCK_FILE`, holding the pid and host)
makes a second run stop with a message naming the holder; a lock left by a dead process
on this host is taken over. Temporary files of writes killed midway are removed when a
run starts.

Sharded runs (``shard``, see `invprotect.sharding`): shard K of N does, and reports, only
the files it owns. It holds its own lock (``.invprotect.shard-K-of-N.lock``), so the
shards of one set run at the same time, on one machine or several sharing DST, while a
second run of the same shard, a shard of another N and an unsharded run are refused. It
appends its entries to its own manifest part, ``DST/manifest.shard-K-of-N.jsonl``, and
reads of the shared manifest only its own entries. When it ends, its part is folded into
``manifest.jsonl`` (an atomic rewrite sorted by path, under a short merge lock) and
deleted, by the shard itself or, when another process is merging at that moment, by
that process, which folds every part it finds idle: a finished set has one manifest,
whatever order its shards ran, or ran again, in. A part left by an interrupted shard is
folded in by the next shard that ends or the next unsharded run, and read by its shard
when it runs again, so its files are not protected twice. A shard removes only the
stale temporary files of its own outputs.

Protection appends one JSON line per finished image to ``DST/manifest.jsonl`` (keyed
digests only, see `invprotect.record`). A run started again skips an image only when its
manifest entry, its output file and its source still agree: a changed source or a
damaged output is protected again, and a destination protected under another key is
refused before anything is written. Recovery checks each record's key before writing:
files protected under another key are reported as failed and nothing is written for
them. An output already present is skipped only when it decodes to the recorded original.

Nothing is skipped silently: files that are not images, hidden files and links to
folders are listed in `TreeReport.skipped_files`; unreadable folders, broken links and
files that cannot be kept whole (16-bit, animated, metadata a PNG cannot carry) fail with
a reason. A bad or corrupt file fails alone; the rest of its batch goes on. Work goes in
batches of at most ``batch_size`` files and `invprotect.tiles.PIXEL_BUDGET` pixels (a
larger image alone), and images with a side over the tile side are protected as
independent tiles (`invprotect.tiles`), so memory grows neither with the number of files
nor with their size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from invprotect.checkpoint import (
    TEMPORARY_NAME,
    atomic_write_bytes,
    remove_stale_temporaries,
)
from invprotect.imageio import (
    IMAGE_SUFFIXES,
    BadImageError,
    SourceImage,
    encode_recovered,
    open_image,
    pixel_digest,
    read_source,
    rebuild_image,
    rgb_pixels,
)
from invprotect.metrics import psnr, ssim
from invprotect.models.protector import Protector
from invprotect.pngio import chunks_if_png, encode_png
from invprotect.record import RECORD_CHUNK, BadRecordError, RecordKeys, RecoveryRecord
from invprotect.sharding import Shard
from invprotect.tiles import (
    PIXEL_BUDGET,
    TileLayout,
    approximate_tiles,
    by_budget,
    decode_tiles,
    encode_tiles,
    needs_tiles,
    tile_count,
    tile_side,
    tiled_quality,
)

MANIFEST = "manifest.jsonl"
"""Name of the manifest written into the destination folder."""
LOCK_FILE = ".invprotect.lock"
"""Name of the lock file a run holds in its destination folder."""
MERGE_LOCK = ".invprotect.merge.lock"
"""Name of the lock file held while manifest parts are folded into the manifest."""
MERGE_WAIT_SECONDS = 300.0
"""How long a shard waits for another one's merge before giving up."""
_SHARD_LOCK = re.compile(r"\.invprotect\.shard-(\d+)-of-(\d+)\.lock")
_PART = re.compile(r"manifest\.shard-(\d+)-of-(\d+)\.jsonl")
_ENTRY_FIELDS = ("path", "output", "original_mac", "protected_file_sha256", "key_id")


class DestinationError(ValueError):
    """The destination cannot be used: it overlaps the source, is a file, or is not writable."""


class DestinationLockedError(DestinationError):
    """Another run holds the destination's lock file."""


@dataclass(frozen=True)
class Job:
    """One input file, its path relative to the source root, and its output file."""

    source: Path
    relative: str
    output: Path


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
        whole = scan_tree(src, dst, ignore)
        return TreeScan(
            [job for job in whole.jobs if shard.owns(job.relative)],
            *(
                [entry for entry in entries if shard.owns(entry[0])]
                for entries in (whole.failed, whole.skipped, whole.linked)
            ),
        )
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


def collect_jobs(
    src: Path, dst: Path, shard: Shard | None = None
) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs of `scan_tree` and the entries that failed (its skipped entries left out)."""
    scan = scan_tree(src, dst, shard=shard)
    return scan.jobs, scan.failed


@dataclass
class TreeReport:
    """The outcome of `protect_tree` or `recover_tree`.

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


def read_manifest(
    path: Path,
    warnings: list[str] | None = None,
    keep: Callable[[str], bool] | None = None,
) -> dict[str, dict]:
    """Entries of a manifest by relative source path; lines that are not entries are ignored.

    Args:
        path: The manifest file (a missing file gives no entries).
        warnings: Receives one message per ignored line (a torn last line of an
            interrupted run, text that is not JSON or not UTF-8, a JSON value that is not
            an object with a string ``path``, a path that leaves the folder).
        keep: Keep only the entries whose path it accepts (for example `Shard.owns`);
            the file is read line by line, so the others never fill memory.

    Raises:
        ValueError: If the file exists but cannot be read.
    """
    return {
        entry["path"]: entry
        for entry in _manifest_entries(path, warnings)
        if keep is None or keep(entry["path"])
    }


def _manifest_entries(path: Path, warnings: list[str] | None) -> Iterator[dict]:
    """The entries of `read_manifest`, in file order, read line by line (later ones win)."""
    try:
        with contextlib.ExitStack() as stack:
            lines = stack.enter_context(path.open("rb")) if path.is_file() else iter(())
            for number, line in enumerate(lines, 1):
                entry = _manifest_entry(path, number, line, warnings)
                if entry is not None:
                    yield entry
    except OSError as error:
        raise ValueError(f"cannot read the manifest {path}: {error.strerror}") from None


def _manifest_entry(
    path: Path, number: int, line: bytes, warnings: list[str] | None
) -> dict | None:
    """The entry on one manifest line, or ``None`` (with a warning unless it is blank)."""
    if not line.strip():
        return None
    try:
        entry = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # JSON, UTF-8 or nesting
        torn = not line.endswith(b"\n")
        problem = "is incomplete (an interrupted run)" if torn else "is not UTF-8 JSON"
        _warn(warnings, f"{path}: line {number} {problem}; ignored")
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        _warn(warnings, f"{path}: line {number} is not an entry with a 'path'; ignored")
        return None
    if not all(_inside(entry.get(key, "")) for key in ("path", "output")):
        _warn(warnings, f"{path}: line {number} names a path outside its folder; ignored")
        return None
    return entry


def _inside(relative: object) -> bool:
    """Whether a manifest path stays inside its folder (relative, no ``..``)."""
    if not isinstance(relative, str):
        return True  # not a path: the entry is merely incomplete
    return not Path(relative).is_absolute() and ".." not in Path(relative).parts


def _warn(warnings: list[str] | None, message: str) -> None:
    if warnings is not None:
        warnings.append(message)


def _manifest_is_clean(path: Path, entries: dict[str, dict]) -> bool:
    """Whether the manifest holds exactly one well-formed line per entry, newline-ended."""
    if not path.is_file():
        return True
    data = path.read_bytes()
    return data.endswith(b"\n") and data.count(b"\n") == len(entries) and b"\n\n" not in data


def _write_manifest(path: Path, entries: dict[str, dict]) -> None:
    lines = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries.values())
    atomic_write_bytes(path, lines.encode())


def _append(path: Path, entry: dict) -> None:
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(handle, "a") as file:
        file.write(json.dumps(entry, sort_keys=True) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
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


def _pad(rgb: torch.Tensor, multiple: int) -> torch.Tensor:
    """Edge-replicate ``(3, H, W)`` up to sides divisible by ``multiple``."""
    height, width = rgb.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return rgb
    padded = np.pad(rgb.numpy(), ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")
    return torch.from_numpy(padded)


def _checked_paths(src: Path, dst: Path) -> tuple[Path, Path, Path]:
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
def _destination(
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
    lock = _acquire_lock(root, shard)
    try:
        if shard is None:
            stale = remove_stale_temporaries(root)
        else:
            stale = _remove_temporaries_of(root, {*outputs, root / manifest_part(shard)})
        if stale:
            report.warnings.append(f"removed {len(stale)} temporary files of an interrupted run")
        yield
    finally:
        lock.unlink(missing_ok=True)
        if not existed:
            with contextlib.suppress(OSError):
                root.rmdir()  # only succeeds when nothing was written


def manifest_part(shard: Shard) -> str:
    """Name of the manifest part ``shard`` appends to in DST: ``manifest.shard-K-of-N.jsonl``."""
    return f"manifest.{shard.tag}.jsonl"


def _lock_name(shard: Shard | None) -> str:
    return LOCK_FILE if shard is None else f".invprotect.{shard.tag}.lock"


def _acquire_lock(root: Path, shard: Shard | None = None) -> Path:
    """Take the lock of an unsharded run, or of ``shard``, in ``root``; returns its path.

    Raises:
        DestinationLockedError: If a live process holds the same lock, or a lock of a
            run that cannot share ``root`` with this one (see `_refuse_other_sets`).
        DestinationError: If the lock file cannot be written.
    """
    path = root / _lock_name(shard)
    other = _create_lock(path)
    if other is not None:
        which = "" if shard is None else f" for shard {shard}"
        raise DestinationLockedError(
            f"DST {root} is in use{which} by {_who(other)} (lock file {path}); wait for "
            "that run, or delete the lock file if it is not running"
        )
    try:
        _refuse_other_sets(root, shard)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _create_lock(path: Path) -> dict | None:
    """Create the lock file ``path`` naming this process; ``None`` then, else its holder.

    A lock whose holder died on this host is taken over, once.

    Raises:
        DestinationError: If the lock file cannot be written.
    """
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.ctime()}
    took_over = recreated = False
    while True:
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            other = _lock_holder(path)
            if took_over or not _is_dead(other):
                return other
            path.unlink(missing_ok=True)
            took_over = True
            continue
        except FileNotFoundError:
            if recreated:  # removed again: someone else manages this folder
                raise DestinationError(
                    f"cannot write into DST {path.parent}: it was removed while starting"
                ) from None
            # an empty DST is removed by a run (another shard) that wrote nothing
            path.parent.mkdir(parents=True, exist_ok=True)
            recreated = True
            continue
        except OSError as error:
            raise DestinationError(
                f"cannot write into DST {path.parent}: {error.strerror}"
            ) from None
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps(holder) + "\n")
        return None


def _who(holder: dict) -> str:
    if not holder:
        return "an unknown process"
    return f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def _refuse_other_sets(root: Path, shard: Shard | None) -> None:
    """Refuse to share ``root`` with a live run that is not another shard of the same set.

    Shards of one set (the same N) share DST; an unsharded run shares it with no one.
    Locks of dead processes on this host are removed.

    Raises:
        DestinationLockedError: If such a run holds a lock in ``root``.
    """
    mine = _lock_name(shard)
    for path in sorted(root.iterdir()):
        match = _SHARD_LOCK.fullmatch(path.name)
        if path.name == mine or not (match or path.name == LOCK_FILE):
            continue
        if shard is not None and match and int(match[2]) == shard.count:
            continue
        other = _lock_holder(path)
        if _is_dead(other):
            path.unlink(missing_ok=True)
            continue
        running = "an unsharded run" if match is None else f"shard {match[1]}/{match[2]}"
        this = "an unsharded run" if shard is None else f"shard {shard}"
        raise DestinationLockedError(
            f"DST {root}: expected only shards of one set (the same N) to run in it at once, "
            f"but {running} holds it ({_who(other)}, lock file {path}) and this is {this}; "
            "wait for that run, give every shard the same N, or delete the lock file if it "
            "is not running"
        )


@contextlib.contextmanager
def _merge_lock(root: Path, wait: float = MERGE_WAIT_SECONDS) -> Iterator[None]:
    """Hold ``root``'s merge lock for the block (waiting up to ``wait`` seconds for it).

    Raises:
        DestinationLockedError: If another process holds it for longer than ``wait``.
    """
    path = root / MERGE_LOCK
    deadline = time.monotonic() + wait
    while (other := _create_lock(path)) is not None:
        if time.monotonic() > deadline:
            raise DestinationLockedError(
                f"DST {root}: expected the manifest's merge to take seconds, but "
                f"{_who(other)} has held it for over {wait:.0f} s (lock file {path}); "
                "delete the lock file if that process is not running"
            )
        time.sleep(0.05)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _idle_parts(root: Path) -> list[Path]:
    """The manifest parts in ``root`` whose shard is not running (no lock, or a dead one's)."""
    parts = []
    for path in sorted(root.iterdir()):
        match = _PART.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_file():
            continue
        lock = root / f".invprotect.shard-{match[1]}-of-{match[2]}.lock"
        if lock.exists() and not _is_dead(_lock_holder(lock)):
            continue
        parts.append(path)
    return parts


def _merge_idle_parts(root: Path, warnings: list[str]) -> None:
    """Fold every idle part into the manifest, unless another process is folding.

    A shard calls this once it has released its lock (its part is idle then). When the
    merge lock is free it folds every idle part, and looks again after releasing the
    lock; when another process holds it, that process looks after releasing it (or
    lists the parts after taking it), so it folds this shard's part: shards that end
    together wait for no one, and their parts are folded in few rewrites.
    """
    while root.is_dir() and _idle_parts(root):
        if _create_lock(root / MERGE_LOCK) is not None:
            return
        try:
            _fold_parts(root, _idle_parts(root), warnings)
        finally:
            (root / MERGE_LOCK).unlink(missing_ok=True)


def _fold_parts(root: Path, parts: list[Path], warnings: list[str]) -> None:
    """Fold manifest ``parts`` into ``root/manifest.jsonl`` and delete them (hold `_merge_lock`).

    The manifest is rewritten atomically, sorted by path; an entry of a part replaces
    the manifest's entry for the same file. Temporary files of an interrupted rewrite
    are removed.
    """
    if not parts:
        return
    manifest = root / MANIFEST
    for stale in root.glob(f".{MANIFEST}.*.tmp"):
        if TEMPORARY_NAME.fullmatch(stale.name) and not stale.is_symlink():
            stale.unlink(missing_ok=True)
    entries = read_manifest(manifest, warnings)
    for part in parts:
        entries.update(read_manifest(part, warnings))
    _write_manifest(manifest, dict(sorted(entries.items())))
    for part in parts:
        part.unlink(missing_ok=True)


def _remove_temporaries_of(root: Path, targets: set[Path]) -> list[Path]:
    """Delete the temporary files of `atomic_write_bytes` under ``root`` for ``targets`` only."""
    removed = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not TEMPORARY_NAME.fullmatch(name) or path.is_symlink():
                continue
            if Path(folder) / name[1:].rsplit(".", 2)[0] in targets and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _bookkeeping(root: Path) -> frozenset[str]:
    """Names of the manifest, its parts and the lock files in ``root`` (never images)."""
    names = {MANIFEST, LOCK_FILE, MERGE_LOCK}
    with contextlib.suppress(OSError):
        names |= {
            path.name
            for path in root.iterdir()
            if _PART.fullmatch(path.name) or _SHARD_LOCK.fullmatch(path.name)
        }
    return frozenset(names)


def _lock_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _is_dead(holder: dict) -> bool:
    """Whether a lock's holder is a process of this host that no longer runs."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _unsafe_output(root: Path, output: Path) -> str | None:
    """Why writing ``output`` could leave ``root`` or hit something not ours, if it could."""
    path = root
    for part in output.relative_to(root).parts:
        path = path / part
        if path.is_symlink():
            return f"{path} is a symbolic link; invprotect never writes through links"
    if output.exists() and not output.is_file():
        return f"{output} exists and is not a regular file"
    return None


def _rgb_digest(rgb: torch.Tensor) -> str:
    return hashlib.sha256(rgb.contiguous().numpy().tobytes()).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def protect_tree(
    src: Path,
    dst: Path,
    protector: Protector,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    shard: Shard | None = None,
) -> TreeReport:
    """Protect every image under ``src`` into ``dst`` (PNG with a sealed recovery record).

    ``protector`` is any `Protector` (`RAEG`, or a baseline `RAE` or `RIT`); its
    `Protector.encode` makes the pixels and record bytes of each file. With ``shard``
    (of more than one), only that shard's files, with the same bytes as an unsharded
    run, and their manifest entries go through the shard's part (see the module's notes).

    Raises:
        ValueError: If ``src`` does not exist or the manifest cannot be read.
        DestinationError: If ``dst`` overlaps ``src``, cannot be written, is locked by
            another run, or holds files protected under another key.
    """
    shard = None if shard is None or shard.count == 1 else shard
    src, dst, root = _checked_paths(src, dst)
    scan = scan_tree(src, dst, shard=shard)
    report = TreeReport(failed=list(scan.failed), skipped_files=list(scan.skipped))
    report.warnings += [f"{relative}: {note}" for relative, note in scan.linked]
    keys = protector.keys
    manifest_path = root / MANIFEST
    own_path = manifest_path if shard is None else root / manifest_part(shard)
    for path in (manifest_path, own_path):
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise DestinationError(f"{path} is a link or not a file; refusing to write it")
    with _destination(root, report, shard, [job.output for job in scan.jobs]):
        with _merge_lock(root):  # a shard only waits for a merge that may hold its part
            if shard is None:  # it appends to the manifest: fold in what shards left first
                _fold_parts(root, _idle_parts(root), report.warnings)
        own = read_manifest(own_path, report.warnings)
        done, key_ids = {}, {str(entry.get("key_id")) for entry in own.values()}
        if shard is not None:  # the shared manifest too, keeping only this shard's entries
            for entry in _manifest_entries(manifest_path, report.warnings):
                key_ids.add(str(entry.get("key_id")))
                if shard.owns(entry["path"]):
                    done[entry["path"]] = entry
        done.update(own)
        others = sorted(key_ids - {keys.key_id, "None"})
        if others:
            raise DestinationError(
                f"DST {root} holds files protected under another key ({others[0][:12]}...); "
                "protect into a new folder, or use the protector that protected them"
            )
        if not _manifest_is_clean(own_path, own):
            _write_manifest(own_path, own)
        redone = False
        for batch in _batches(scan.jobs, batch_size):
            todo = []
            for job in batch:
                try:
                    source = read_source(job.source)
                except BadImageError as error:
                    report.failed.append((job.relative, str(error)))
                    continue
                mac = keys.original_mac(source.digest)
                entry = done.get(job.relative)
                if entry is not None:
                    problem = _unfinished(entry, job, root, keys, mac)
                    if problem is None:
                        report.skipped += 1
                        continue
                    report.warnings.append(f"{job.relative}: {problem}; protected again")
                    redone = True
                unsafe = _unsafe_output(root, job.output)
                if unsafe is not None:
                    report.failed.append((job.relative, unsafe))
                    continue
                todo.append((job, source, mac))
            _protect_batch(protector, keys, todo, root, own_path, report)
            if progress is not None:
                progress(len(batch))
        if redone:
            _write_manifest(own_path, read_manifest(own_path))
    if shard is not None:
        _merge_idle_parts(root, report.warnings)
    return report


def _unfinished(entry: dict, job: Job, root: Path, keys: RecordKeys, mac: str) -> str | None:
    """Why a manifest entry does not prove its job done (``None`` when it does)."""
    if any(not isinstance(entry.get(name), str) for name in _ENTRY_FIELDS):
        return "its manifest entry is incomplete"
    if entry["key_id"] != keys.key_id:
        return "its manifest entry names another key"
    if entry["output"] != job.output.relative_to(root).as_posix():
        return "its manifest entry names another output"
    if entry["original_mac"] != mac:
        return "the source changed since it was protected"
    if job.output.is_symlink() or _file_sha256(job.output) != entry["protected_file_sha256"]:
        return "its output is missing or was changed"
    return None


def _protect_batch(
    protector: Protector,
    keys: RecordKeys,
    todo: list[tuple[Job, SourceImage, str]],
    root: Path,
    manifest_path: Path,
    report: TreeReport,
) -> None:
    """Protect one batch of prepared images, write their files and manifest entries."""
    groups: dict[tuple[int, int], list[tuple[Job, SourceImage, torch.Tensor]]] = {}
    macs = {job.relative: mac for job, _, mac in todo}
    side = tile_side(protector.side_multiple)
    finished: list[tuple[Job, SourceImage, torch.Tensor, bytes, dict]] = []
    for job, source, _ in todo:
        padded = _pad(source.rgb, protector.side_multiple)
        if not needs_tiles(*padded.shape[-2:], side):
            groups.setdefault(tuple(padded.shape[-2:]), []).append((job, source, padded))
            continue
        try:
            image, layout, residual = encode_tiles(protector, padded, side)
        except ValueError as error:
            report.failed.append((job.relative, str(error)))
            continue
        finished.append((job, source, image, residual, {**source.extra, "tiles": layout.to_dict()}))
    for whole_group in groups.values():
        group, protected, residuals = _encode(protector, whole_group, report)
        finished += [
            (job, source, image, residual, source.extra)
            for (job, source, _), image, residual in zip(group, protected, residuals, strict=True)
        ]
    for job, source, image, residual, extra in finished:
        height, width = source.rgb.shape[-2:]
        record = RecoveryRecord(
            source.mode,
            height,
            width,
            macs[job.relative],
            _rgb_digest(image),
            keys.key_id,
            residual,
            extra,
        )
        pixels = image.permute(1, 2, 0).numpy()
        if source.alpha is not None:
            alpha = np.pad(
                source.alpha,
                ((0, image.shape[1] - height), (0, image.shape[2] - width)),
                mode="edge",
            )
            pixels = np.dstack([pixels, alpha])
        data = encode_png(pixels, {RECORD_CHUNK: record.seal(keys)})
        if not _write_output(job, data, report):
            continue
        if "tiles" in extra:
            quality = tiled_quality(image[:, :height, :width], source.rgb, side)
        else:
            crop = image[None, :, :height, :width].float() / 255
            original = source.rgb[None].float() / 255
            quality = psnr(crop, original, max_db=100.0).item(), ssim(crop, original).item()
        _append(
            manifest_path,
            {
                "path": job.relative,
                "output": job.output.relative_to(root).as_posix(),
                "original_mac": macs[job.relative],
                "key_id": keys.key_id,
                "protected_file_sha256": hashlib.sha256(data).hexdigest(),
                "psnr": round(quality[0], 3),
                "ssim": round(quality[1], 4),
                "record_bytes": len(residual),
            },
        )
        report.written += 1


def _encode(
    protector: Protector,
    group: list[tuple[Job, SourceImage, torch.Tensor]],
    report: TreeReport,
) -> tuple[list[tuple[Job, SourceImage, torch.Tensor]], list[torch.Tensor], list[bytes]]:
    """Protect one group of equal size; when that fails, one image at a time, to name it."""
    try:
        protected, residuals = protector.encode(torch.stack([padded for _, _, padded in group]))
        return group, list(protected), residuals
    except ValueError as error:
        if len(group) == 1:
            report.failed.append((group[0][0].relative, str(error)))
            return [], [], []
    kept, images, records = [], [], []
    for item in group:
        try:
            protected, residuals = protector.encode(item[2][None])
        except ValueError as error:  # e.g. an image too small to hold a baseline's data
            report.failed.append((item[0].relative, str(error)))
            continue
        kept.append(item)
        images.append(protected[0])
        records.append(residuals[0])
    return kept, images, records


def recover_tree(
    src: Path,
    dst: Path,
    protector: Protector,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    shard: Shard | None = None,
) -> TreeReport:
    """Recover every protected PNG under ``src`` into ``dst``, in each original's mode.

    Unaltered files come back bit for bit with their metadata (checked against the keyed
    digest in their record and, when ``src`` holds a ``manifest.jsonl``, against the
    manifest). Files sealed under another key, or with a corrupt record, fail and nothing
    is written for them. Altered files (or files without a record) are recovered
    approximately and listed in ``TreeReport.altered``. Untouched files that the protector
    recovers approximately by design (RAE whose perturbation did not fit) are listed in
    ``TreeReport.approximate``. Outputs that exist already are skipped only when they
    decode to the recorded original; others are recovered again. With ``shard`` (of
    more than one), only that shard's files.

    Raises:
        ValueError: If ``src`` does not exist.
        DestinationError: If ``dst`` overlaps ``src``, cannot be written or is locked.
    """
    shard = None if shard is None or shard.count == 1 else shard
    src, dst, root = _checked_paths(src, dst)
    scan = scan_tree(src, dst, ignore=_bookkeeping(src), shard=shard)
    report = TreeReport(failed=list(scan.failed), skipped_files=list(scan.skipped))
    report.warnings += [f"{relative}: {note}" for relative, note in scan.linked]
    expected = read_manifest(src / MANIFEST, report.warnings) if src.is_dir() else {}
    expected_by_output = {
        entry["output"]: entry
        for entry in expected.values()
        if isinstance(entry.get("output"), str)
    }
    keys = protector.keys
    with _destination(root, report, shard, [job.output for job in scan.jobs]):
        for batch in _batches(scan.jobs, batch_size):
            opened = []
            for job in batch:
                try:
                    item = _open_protected(job, keys, protector.side_multiple)
                except (BadImageError, BadRecordError) as error:
                    report.failed.append((job.relative, str(error)))
                    continue
                unsafe = _unsafe_output(root, job.output)
                if unsafe is not None:
                    report.failed.append((job.relative, unsafe))
                    continue
                if job.output.exists():
                    if item.exact and _already_recovered(job.output, item, keys):
                        report.skipped += 1
                        continue
                    report.warnings.append(
                        f"{job.relative}: the existing output is not the recorded original; "
                        "recovered again"
                    )
                opened.append(item)
            context = _Context(protector, keys, expected_by_output, report)
            for item in [item for item in opened if item.tiles is not None]:
                _recover_tiled(item, context)
            opened = [item for item in opened if item.tiles is None]
            for group in _same_shape([item for item in opened if item.exact]):
                for item, pixels, promised in _decode(protector, group, report):
                    _finish_exact(item, pixels, promised, context)
            altered = [item for item in opened if not item.exact]
            report.altered.extend(item.job.relative for item in altered)
            for group in _same_shape(altered, pad_to=protector.side_multiple):
                padded = torch.stack([_pad(item.rgb, protector.side_multiple) for item in group])
                for item, image in zip(group, _approximate(protector, padded), strict=True):
                    _finish_altered(item, image, context)
            if progress is not None:
                progress(len(batch))
    return report


@dataclass
class _Protected:
    """A protected file read for recovery."""

    job: Job
    rgb: torch.Tensor  # (3, H, W) uint8
    alpha: np.ndarray | None
    record: RecoveryRecord | None

    @property
    def exact(self) -> bool:
        """True when the file is as protected (its record matches its pixels)."""
        return self.record is not None and _rgb_digest(self.rgb) == self.record.protected_sha256

    @property
    def tiles(self) -> TileLayout | None:
        """The tile layout of a file protected as tiles (``None`` for one untiled image)."""
        if self.record is None or "tiles" not in self.record.extra:
            return None
        return TileLayout.from_dict(self.record.extra["tiles"])


@dataclass
class _Context:
    """What finishing one recovered file needs."""

    protector: Protector
    keys: RecordKeys
    expected_by_output: dict[str, dict]
    report: TreeReport


def _open_protected(job: Job, keys: RecordKeys, side_multiple: int) -> _Protected:
    """Read a protected file and open its record (checked against the key and the image).

    Raises:
        BadImageError: If the file cannot be decoded.
        BadRecordError: If its record is malformed, corrupt, sealed under another key, or
            does not fit the image.
    """
    image = open_image(job.source)
    try:
        data = job.source.read_bytes()
        chunks = [body for kind, body in chunks_if_png(data) if kind == RECORD_CHUNK]
    except (OSError, ValueError) as error:
        raise BadRecordError(f"{job.source}: {error}") from None
    if len(chunks) > 1:
        raise BadRecordError(f"{job.source}: {len(chunks)} recovery records, expected one")
    chunk = chunks[0] if chunks else None
    record = None if chunk is None else RecoveryRecord.open(chunk, keys, str(job.source))
    alpha = np.asarray(image.getchannel("A")).copy() if image.mode in ("RGBA", "LA") else None
    rgb = torch.from_numpy(rgb_pixels(image)).permute(2, 0, 1)
    if record is not None:
        height, width = rgb.shape[-2:]
        fits = all(
            -(-size // side_multiple) * side_multiple == side
            for size, side in ((record.height, height), (record.width, width))
        )
        if not fits:
            raise BadRecordError(
                f"{job.source}: record fields 'height'/'width' ({record.height}x{record.width}) "
                f"do not fit the image ({height}x{width})"
            )
        if record.mode in ("RGBA", "LA") and alpha is None:
            raise BadRecordError(f"{job.source}: record of mode {record.mode} but no alpha")
    return _Protected(job, rgb, alpha, record)


def _already_recovered(path: Path, item: _Protected, keys: RecordKeys) -> bool:
    """Whether the file at ``path`` decodes to the original recorded in ``item``."""
    assert item.record is not None
    try:
        image = open_image(path)
    except BadImageError:
        return False
    return keys.original_mac(pixel_digest(image)) == item.record.original_mac


def _decode(
    protector: Protector, group: list[_Protected], report: TreeReport
) -> list[tuple[_Protected, torch.Tensor, bool]]:
    """Restore one group of equal size; when that fails, one image at a time, to name it."""
    try:
        restored, promised = protector.decode(
            torch.stack([item.rgb for item in group]),
            [item.record.residual for item in group if item.record is not None],
        )
        return list(zip(group, restored, promised, strict=True))
    except ValueError as error:
        if len(group) == 1:
            report.failed.append((group[0].job.relative, f"{group[0].job.source}: {error}"))
            return []
    results = []
    for item in group:
        results.extend(_decode(protector, [item], report))
    return results


def _recover_tiled(item: _Protected, context: _Context) -> None:
    """Recover a file protected as tiles: untouched tiles exactly, altered ones approximately."""
    assert item.record is not None and item.tiles is not None
    layout, exact = item.tiles, item.exact
    try:
        restored, promised, altered = decode_tiles(
            context.protector, item.rgb, item.record.residual, layout
        )
    except ValueError as error:
        context.report.failed.append((item.job.relative, f"{item.job.source}: {error}"))
        return
    if exact:
        _finish_exact(item, restored, promised, context)
        return
    total = tile_count(*item.rgb.shape[-2:], layout.side)
    where = ", ".join(f"({tile.top}, {tile.left})" for tile in altered[:8])
    context.report.altered.append(item.job.relative)
    context.report.warnings.append(
        f"{item.job.relative}: {len(altered)} of {total} tiles of {layout.side} px altered "
        f"(top-left corners {where}{', ...' if len(altered) > 8 else ''}); those are "
        "recovered approximately, the others bit for bit"
    )
    _finish_altered(item, restored, context)


def _approximate(protector: Protector, padded: torch.Tensor) -> torch.Tensor:
    """`Protector.approximate` of padded images, tile by tile when they are large."""
    side = tile_side(protector.side_multiple)
    if not needs_tiles(*padded.shape[-2:], side):
        return protector.approximate(padded)
    return torch.stack([approximate_tiles(protector, image, side) for image in padded])


def _same_shape(items: list[_Protected], pad_to: int = 1) -> Iterator[list[_Protected]]:
    groups: dict[tuple[int, int], list[_Protected]] = {}
    for item in items:
        height, width = item.rgb.shape[-2:]
        groups.setdefault((-(-height // pad_to), -(-width // pad_to)), []).append(item)
    yield from groups.values()


def _finish_exact(
    item: _Protected, restored: torch.Tensor, promised: bool, context: _Context
) -> None:
    """Rebuild the original's mode and metadata, check it and write it."""
    record = item.record
    assert record is not None
    alpha = item.alpha[: record.height, : record.width] if item.alpha is not None else None
    try:
        restored = restored[:, : record.height, : record.width]
        image = rebuild_image(restored, alpha, record.mode, record.extra, approximate=not promised)
        data = encode_recovered(image, record.extra.get("metadata", {}))
    except ValueError as error:
        context.report.failed.append((item.job.relative, f"{item.job.source}: {error}"))
        return
    if not promised:
        context.report.approximate.append(item.job.relative)
    elif context.keys.original_mac(pixel_digest(image)) != record.original_mac:
        context.report.mismatched.append(item.job.relative)
    _write_recovered(item.job, image, data, context, check=promised)


def _finish_altered(item: _Protected, pixels: torch.Tensor, context: _Context) -> None:
    """Write the approximate recovery of an altered file (with its metadata when known)."""
    height, width = item.rgb.shape[-2:]
    metadata = {}
    if item.record is not None:
        height, width = min(height, item.record.height), min(width, item.record.width)
        metadata = item.record.extra.get("metadata", {})
    out = pixels[:, :height, :width].permute(1, 2, 0).contiguous().numpy()
    if item.alpha is not None:
        image = Image.fromarray(np.dstack([out, item.alpha[:height, :width]]), "RGBA")
    else:
        image = Image.fromarray(out, "RGB")
    try:
        data = encode_recovered(image, metadata)
    except ValueError:
        data = encode_recovered(image, {})
        context.report.warnings.append(f"{item.job.relative}: its metadata could not be restored")
    _write_recovered(item.job, image, data, context, check=True)


def _write_recovered(
    job: Job, image: Image.Image, data: bytes, context: _Context, check: bool
) -> None:
    """Write one recovery; with ``check``, compare it with the manifest when there is one."""
    entry = context.expected_by_output.get(job.relative)
    if check and entry is not None and isinstance(entry.get("original_mac"), str):
        if context.keys.original_mac(pixel_digest(image)) != entry["original_mac"]:
            if job.relative not in context.report.mismatched:
                context.report.mismatched.append(job.relative)
    if _write_output(job, data, context.report):
        context.report.written += 1


def _write_output(job: Job, data: bytes, report: TreeReport) -> bool:
    """Write one output atomically; a write that fails fails its file only."""
    try:
        atomic_write_bytes(job.output, data)
    except OSError as error:
        report.failed.append(
            (job.relative, f"cannot write {job.output}: {error.strerror or error}")
        )
        return False
    return True
