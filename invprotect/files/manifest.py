"""The manifest of a destination: one JSON line per finished file, and its resume rule.

Every tree run (protect, recover's check, purify) keeps its manifest the same way:
``DST/manifest.jsonl`` holds one JSON object per finished file, with at least its
relative source ``path`` and its ``output``, appended (and flushed to disk) as each file
is written; later lines win. A run started again skips a file only when `unfinished`
finds its entry, its output file and its source still in agreement. Lines that are not
entries (a torn last line of an interrupted run, text that is not JSON) are ignored with
a warning, and the manifest is rewritten clean.

A sharded run appends to its own part (`manifest_part`); parts are folded into the
manifest (`fold_parts`, `merge_idle_parts`) when their shards end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from invprotect.files.atomic import TEMPORARY_NAME, atomic_write_bytes
from invprotect.files.locks import (
    LOCK_FILE,
    MERGE_LOCK,
    SHARD_LOCK,
    DestinationError,
    create_lock,
    is_dead,
    lock_holder,
    merge_lock,
)
from invprotect.sharding import Shard

MANIFEST = "manifest.jsonl"
"""Name of the manifest written into the destination folder."""
PART = re.compile(r"manifest\.shard-(\d+)-of-(\d+)\.jsonl")
"""Names of the manifest parts of shards (groups: K and N)."""


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
        for entry in manifest_entries(path, warnings)
        if keep is None or keep(entry["path"])
    }


def manifest_entries(path: Path, warnings: list[str] | None) -> Iterator[dict]:
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


def manifest_is_clean(path: Path, entries: dict[str, dict]) -> bool:
    """Whether the manifest holds exactly one well-formed line per entry, newline-ended."""
    if not path.is_file():
        return True
    data = path.read_bytes()
    return data.endswith(b"\n") and data.count(b"\n") == len(entries) and b"\n\n" not in data


def write_manifest(path: Path, entries: dict[str, dict]) -> None:
    """Rewrite the manifest atomically: one line per entry, keys sorted."""
    lines = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries.values())
    atomic_write_bytes(path, lines.encode())


def append_entry(path: Path, entry: dict) -> None:
    """Append one entry as a line and flush it to disk (links are not followed)."""
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(handle, "a") as file:
        file.write(json.dumps(entry, sort_keys=True) + "\n")
        file.flush()
        os.fsync(file.fileno())


def append_entries(path: Path, entries: list[dict]) -> None:
    """Append entries as lines with one write and one flush to disk (links are not followed).

    Nothing is written for no entries. A line lost to a crash before the flush costs only
    time: a file without its entry is protected again on resume.
    """
    if not entries:
        return
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(handle, "a") as file:
        file.write("".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries))
        file.flush()
        os.fsync(file.fileno())


def manifest_part(shard: Shard) -> str:
    """Name of the manifest part ``shard`` appends to in DST: ``manifest.shard-K-of-N.jsonl``."""
    return f"manifest.{shard.tag}.jsonl"


def idle_parts(root: Path) -> list[Path]:
    """The manifest parts in ``root`` whose shard is not running (no lock, or a dead one's)."""
    parts = []
    for path in sorted(root.iterdir()):
        match = PART.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_file():
            continue
        lock = root / f".invprotect.shard-{match[1]}-of-{match[2]}.lock"
        if lock.exists() and not is_dead(lock_holder(lock)):
            continue
        parts.append(path)
    return parts


def merge_idle_parts(root: Path, warnings: list[str]) -> None:
    """Fold every idle part into the manifest, unless another process is folding.

    A shard calls this once it has released its lock (its part is idle then). When the
    merge lock is free it folds every idle part, and looks again after releasing the
    lock; when another process holds it, that process looks after releasing it (or
    lists the parts after taking it), so it folds this shard's part: shards that end
    together wait for no one, and their parts are folded in few rewrites.
    """
    while root.is_dir() and idle_parts(root):
        if create_lock(root / MERGE_LOCK) is not None:
            return
        try:
            fold_parts(root, idle_parts(root), warnings)
        finally:
            (root / MERGE_LOCK).unlink(missing_ok=True)


def fold_parts(root: Path, parts: list[Path], warnings: list[str]) -> None:
    """Fold manifest ``parts`` into ``root/manifest.jsonl`` and delete them (hold `merge_lock`).

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
    write_manifest(manifest, dict(sorted(entries.items())))
    for part in parts:
        part.unlink(missing_ok=True)


def bookkeeping_names(root: Path) -> frozenset[str]:
    """Names of the manifest, its parts and the lock files in ``root`` (never images)."""
    names = {MANIFEST, LOCK_FILE, MERGE_LOCK}
    with contextlib.suppress(OSError):
        names |= {
            path.name
            for path in root.iterdir()
            if PART.fullmatch(path.name) or SHARD_LOCK.fullmatch(path.name)
        }
    return frozenset(names)


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes (``None`` when it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def unfinished(
    entry: dict, expected: Sequence[tuple[str, str, str]], output: Path, file_field: str
) -> str | None:
    """Why a manifest entry does not prove its file done (``None`` when it does).

    The one resume rule of every tree run: the entry holds every field as text, each
    expected field has the value this run would write, and the output file is there,
    no link, with the digest the entry recorded.

    Args:
        entry: The file's manifest entry.
        expected: ``(field, value, reason)`` in the order they are checked; ``reason``
            is what a different value means (for example "the source changed").
        output: The file's output.
        file_field: The entry's field holding the output's SHA-256.
    """
    if any(not isinstance(entry.get(name), str) for name, _, _ in expected) or not isinstance(
        entry.get(file_field), str
    ):
        return "its manifest entry is incomplete"
    for name, value, reason in expected:
        if entry[name] != value:
            return reason
    if output.is_symlink() or file_sha256(output) != entry[file_field]:
        return "its output is missing or was changed"
    return None


def manifest_paths(root: Path, shard: Shard | None) -> tuple[Path, Path]:
    """The manifest of ``root`` and the file a run appends to (the manifest, or its part).

    Raises:
        DestinationError: If either is a link or not a file.
    """
    manifest = root / MANIFEST
    own = manifest if shard is None else root / manifest_part(shard)
    for path in (manifest, own):
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise DestinationError(f"{path} is a link or not a file; refusing to write it")
    return manifest, own


@dataclass
class Resume:
    """What a destination's manifest says is done, for one (unsharded or sharded) run.

    Attributes:
        path: The file this run appends to (`MANIFEST`, or the shard's part).
        done: Entries of this run's files by relative source path (its part wins).
        settings: Every value of the run's settings field (``key_id`` for protect) found
            in the entries read, as text (``"None"`` for an entry without one).
        clean: Whether ``path`` holds exactly one well-formed line per entry.
    """

    path: Path
    done: dict[str, dict]
    settings: set[str]
    clean: bool

    def others(self, setting: str) -> list[str]:
        """The settings of earlier runs other than ``setting``, sorted."""
        return sorted(self.settings - {setting, "None"})

    def tidy(self) -> None:
        """Rewrite ``path`` with one line per entry when it is not clean."""
        if not self.clean:
            write_manifest(self.path, read_manifest(self.path))
            self.clean = True


def read_resume(root: Path, shard: Shard | None, setting: str, warnings: list[str]) -> Resume:
    """Read what is done in ``root`` (hold its lock): fold in idle parts, then read entries.

    An unsharded run first folds the parts that shards left into the manifest (it
    appends to the manifest); a shard waits only for a merge that may hold its part, and
    reads its part and the manifest's entries of its files.

    Args:
        root: The destination.
        shard: The run's shard, or ``None``.
        setting: The entries' field that names the run's settings (see `Resume.others`).
        warnings: Receives one message per ignored manifest line.
    """
    manifest, own_path = manifest_paths(root, shard)
    with merge_lock(root):
        if shard is None:
            fold_parts(root, idle_parts(root), warnings)
    own = read_manifest(own_path, warnings)
    done, settings = {}, {str(entry.get(setting)) for entry in own.values()}
    if shard is not None:
        for entry in manifest_entries(manifest, warnings):
            settings.add(str(entry.get(setting)))
            if shard.owns(entry["path"]):
                done[entry["path"]] = entry
    done.update(own)
    return Resume(own_path, done, settings, manifest_is_clean(own_path, own))
