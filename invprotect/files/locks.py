"""Lock files in a destination folder: one run at a time, or the shards of one set.

A lock file holds the pid, host and start time of its holder. A lock left by a dead
process on this host is taken over. An unsharded run holds `LOCK_FILE`; shard K of N
holds ``.invprotect.shard-K-of-N.lock``, so the shards of one set share a destination
while a second run of the same shard, a shard of another N and an unsharded run are
refused. `merge_lock` guards the short rewrite that folds manifest parts together.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from invprotect.sharding import Shard

LOCK_FILE = ".invprotect.lock"
"""Name of the lock file a run holds in its destination folder."""
MERGE_LOCK = ".invprotect.merge.lock"
"""Name of the lock file held while manifest parts are folded into the manifest."""
MERGE_WAIT_SECONDS = 300.0
"""How long a shard waits for another one's merge before giving up."""
SHARD_LOCK = re.compile(r"\.invprotect\.shard-(\d+)-of-(\d+)\.lock")
"""Names of the lock files of shards (groups: K and N)."""


class DestinationError(ValueError):
    """The destination cannot be used: it overlaps the source, is a file, or is not writable."""


class DestinationLockedError(DestinationError):
    """Another run holds the destination's lock file."""


def lock_name(shard: Shard | None) -> str:
    """Name of the lock file of an unsharded run (``None``) or of ``shard``."""
    return LOCK_FILE if shard is None else f".invprotect.{shard.tag}.lock"


def acquire_lock(root: Path, shard: Shard | None = None) -> Path:
    """Take the lock of an unsharded run, or of ``shard``, in ``root``; returns its path.

    Raises:
        DestinationLockedError: If a live process holds the same lock, or a lock of a
            run that cannot share ``root`` with this one (see `_refuse_other_sets`).
        DestinationError: If the lock file cannot be written.
    """
    path = root / lock_name(shard)
    other = create_lock(path)
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


def create_lock(path: Path) -> dict | None:
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
            other = lock_holder(path)
            if took_over or not is_dead(other):
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
    mine = lock_name(shard)
    for path in sorted(root.iterdir()):
        match = SHARD_LOCK.fullmatch(path.name)
        if path.name == mine or not (match or path.name == LOCK_FILE):
            continue
        if shard is not None and match and int(match[2]) == shard.count:
            continue
        other = lock_holder(path)
        if is_dead(other):
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
def merge_lock(root: Path, wait: float = MERGE_WAIT_SECONDS) -> Iterator[None]:
    """Hold ``root``'s merge lock for the block (waiting up to ``wait`` seconds for it).

    Raises:
        DestinationLockedError: If another process holds it for longer than ``wait``.
    """
    path = root / MERGE_LOCK
    deadline = time.monotonic() + wait
    while (other := create_lock(path)) is not None:
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


def lock_holder(path: Path) -> dict:
    """What the lock file ``path`` says of its holder (empty when unreadable)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_dead(holder: dict) -> bool:
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
