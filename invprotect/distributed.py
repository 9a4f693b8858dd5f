"""Runs under ``torchrun``: the process group, this rank's share of a batch, rank 0 writes.

Without ``torchrun`` (no process group) every function here answers as for one process:
rank 0 of 1, the whole batch is mine, `wrap` returns the module itself, and the
collectives return their input. A training loop written with these helpers therefore
runs bit for bit as before in one process.

Under ``torchrun --nproc-per-node N`` (or several nodes), `process_group` joins the group
that torchrun describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` (gloo on the CPU, NCCL on CUDA). Each step's global batch is split in
contiguous shares (`share`), `wrap` puts a module in
`torch.nn.parallel.DistributedDataParallel` so that gradients are averaged over the ranks,
and only rank 0 (`is_main`) writes files and progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "TORCHRUN_VARIABLES",
    "barrier",
    "from_main",
    "is_distributed",
    "is_main",
    "launched_by_torchrun",
    "main_first",
    "process_group",
    "rank",
    "share",
    "share_weight",
    "sum_over_ranks",
    "world_size",
    "wrap",
]

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Environment variables torchrun sets in every worker it starts."""


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (all of `TORCHRUN_VARIABLES` are set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_distributed() -> bool:
    """Whether a process group of more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes in the group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes checkpoints and progress (rank 0, or the only process)."""
    return rank() == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the block; yields the device this rank computes on.

    Without torchrun, or when a group is already initialised (by the caller), this
    changes nothing and yields ``device``. Under torchrun, a CUDA ``device`` without an
    index becomes ``cuda:LOCAL_RANK`` (one GPU per process) and the backend is NCCL;
    on other devices it is gloo. The group is destroyed when the block ends.

    Args:
        device: The device the user asked for.

    Raises:
        ValueError: If torchrun started more processes on this machine than it has GPUs
            (for a CUDA ``device`` without an index).
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    if device.type == "cuda" and device.index is None:
        local, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= count:
            raise ValueError(
                f"torchrun started process {local} on a machine with {count} GPU(s); "
                f"start at most {count} per machine (--nproc-per-node {count})"
            )
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def share(total: int) -> slice:
    """This rank's contiguous part of a batch of ``total`` items.

    The parts differ in size by at most one (the first ranks take the extra items),
    and rank 0's part comes first, so the parts in rank order are the whole batch.

    Raises:
        ValueError: If the batch has fewer items than there are ranks.
    """
    ranks, me = world_size(), rank()
    if total < ranks:
        raise ValueError(
            f"a batch of {total} images cannot be shared by {ranks} processes; use a batch "
            f"of at least {ranks} images or fewer processes"
        )
    size, extra = divmod(total, ranks)
    start = me * size + min(me, extra)
    return slice(start, start + size + (me < extra))


def share_weight(total: int) -> float:
    """Factor on this rank's mean loss so that averaging over ranks gives the batch mean.

    DistributedDataParallel averages the ranks' gradients with equal weights; a rank
    whose `share` holds ``n`` of ``total`` items scales its mean loss by
    ``n * world_size / total`` (exactly 1.0 when the batch divides evenly).
    """
    part = share(total)
    return (part.stop - part.start) * world_size() / total


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in `DistributedDataParallel` when distributed, else ``module`` itself.

    DDP broadcasts rank 0's parameters and buffers when it wraps the module and its
    buffers before every forward: spectral-norm vectors are the same on every rank
    anyway (they follow the weights), and batch-norm running statistics are rank 0's,
    updated by each rank's own share. On CUDA, batch-norm layers become
    `torch.nn.SyncBatchNorm` (in place), so each step normalises with the statistics
    of the whole global batch, as one process would; PyTorch has no CPU version of it,
    so on the CPU each rank normalises with the statistics of its own share.

    Args:
        module: The module whose gradients the ranks average (trained in place).
        device: The device its parameters are on.
    """
    if not is_distributed():
        return module
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return nn.parallel.DistributedDataParallel(module, device_ids=[device])
    return nn.parallel.DistributedDataParallel(module)


def sum_over_ranks(values: Sequence[float], device: torch.device) -> list[float]:
    """The element-wise sums of ``values`` over all ranks (``values`` itself in one process).

    Args:
        values: This rank's numbers (the same count on every rank).
        device: Where the collective runs (a CUDA device with NCCL).
    """
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def from_main(value: float | None) -> float | None:
    """Rank 0's ``value`` on every rank (for figures only rank 0 computes)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (nothing in one process)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (for example to fill a cache)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
