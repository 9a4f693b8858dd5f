"""Split folder work into shards: ``--shard K/N``, or torchrun's ``RANK`` and ``WORLD_SIZE``.

Shards are numbered from 0, like torchrun's ranks: the shards of a set of ``N`` are
``0/N`` to ``N-1/N``. A file belongs to shard ``sha256(relative path) mod N``: the split
depends only on the file's path relative to SRC and on ``N``, never on the order in
which folders are listed, on the other files of the set or on the machine, so every
shard of a set, on any machine, agrees on who does what, and a file keeps its shard
when others are added. Shards are equal in size up to the randomness of the hash
(for 1 million files in 2 shards, typically within 0.2% of each other).

Under ``torchrun`` the folder commands shard themselves: rank ``RANK`` of
``WORLD_SIZE`` does shard ``RANK/WORLD_SIZE``. No process group is needed (the shards
never talk to each other; they meet through files in DST), so only the environment
variables torchrun sets are read.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import torch

from invprotect.distributed import launched_by_torchrun

__all__ = [
    "SHARD_FORMAT",
    "Shard",
    "parse_shard",
    "shard_from_environment",
    "shard_of",
    "worker_device",
]

SHARD_FORMAT = "K/N with K from 0 to N-1 (like torchrun's RANK), e.g. 0/4 to 3/4"
"""How ``--shard`` is written, in words (for help texts and errors)."""

_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(relative: str, count: int) -> int:
    """The shard (0 to ``count - 1``) that does the file at ``relative`` (a POSIX path).

    Args:
        relative: The file's path relative to SRC, as `invprotect.files.tree.Job.relative`.
        count: The number of shards ``N``.
    """
    digest = hashlib.sha256(os.fsencode(relative)).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the files whose `shard_of` is ``index``.

    Raises:
        ValueError: If ``count`` is below 1 or ``index`` not in ``0 .. count - 1``.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            hint = (
                f"the shards of {self.count} are 0/{self.count} to {self.count - 1}/{self.count}"
                if self.count >= 1
                else "give N of at least 1"
            )
            raise ValueError(
                f"expected a shard {SHARD_FORMAT}, received {self.index}/{self.count}; {hint}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """The shard in file names: ``shard-K-of-N``."""
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, relative: str) -> bool:
        """Whether this shard does the file (or reports the entry) at ``relative``."""
        return self.count == 1 or shard_of(relative, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """The `Shard` written as ``K/N`` (``--shard``).

    Raises:
        ValueError: If ``text`` is not two whole numbers ``K/N`` with ``0 <= K < N``.
    """
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected a shard {SHARD_FORMAT}, received {text!r}; "
            "write the shard's number, a slash and the number of shards"
        )
    return Shard(int(match[1]), int(match[2]))


def shard_from_environment() -> Shard | None:
    """Shard ``RANK/WORLD_SIZE`` when torchrun started this process, else ``None``.

    Raises:
        ValueError: If ``RANK`` or ``WORLD_SIZE`` is not a whole number, or ``RANK`` is
            not below ``WORLD_SIZE``.
    """
    if not launched_by_torchrun():
        return None
    rank, world = os.environ["RANK"], os.environ["WORLD_SIZE"]
    if not (rank.isdigit() and world.isdigit()):
        raise ValueError(
            f"expected whole numbers in torchrun's RANK and WORLD_SIZE, received "
            f"RANK={rank!r} WORLD_SIZE={world!r}; start the command with torchrun itself"
        )
    return Shard(int(rank), int(world))


def worker_device(device: torch.device) -> torch.device:
    """The device of this torchrun worker: ``cuda:LOCAL_RANK`` for a CUDA ``device`` without index.

    Outside torchrun, and for other devices, ``device`` itself, so each of the workers
    torchrun starts on one machine computes on its own GPU.

    Raises:
        ValueError: If torchrun started more workers on this machine than it has GPUs.
    """
    if device.type != "cuda" or device.index is not None or not launched_by_torchrun():
        return device
    local, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
    if local >= count:
        raise ValueError(
            f"expected at most one worker per GPU, received LOCAL_RANK {local} on a machine "
            f"with {count} GPU(s); start at most {count} per machine (--nproc-per-node {count})"
        )
    return torch.device("cuda", local)
