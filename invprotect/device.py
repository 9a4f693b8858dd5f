"""Choosing the device, the CPU threads and the mixed-precision mode of a run."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp32"]


DEVICE_CHOICES = "'auto' (a GPU if there is one), 'cpu', 'cuda', 'cuda:N' or 'mps'"
"""The device strings `pick_device` accepts, in words (for help texts and errors)."""

_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``requested`` if given, else CUDA when available, else the CPU.

    Args:
        requested: ``None`` or ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, ``"mps"``, or a `torch.device`.

    Raises:
        ValueError: If ``requested`` names no device of that list, or one that is not
            available here (no CUDA, no CUDA device ``N``, no MPS).
    """
    if requested is None or str(requested) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(requested).strip().lower()
    if not _DEVICE_PATTERN.fullmatch(text):
        raise ValueError(f"unknown device {str(requested)!r}; use {DEVICE_CHOICES}")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {text} requested, but CUDA is not available here; use 'cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {text} requested, but this machine has {count} CUDA device(s): "
                f"cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps requested, but MPS is not available here; use 'cpu'")
    return device


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """``$OMP_NUM_THREADS`` when it is a positive integer, else every core (`available_cpus`)."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else available_cpus()


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads; returns the number set.

    Args:
        threads: Threads to use (``None``: `default_threads`).

    Raises:
        ValueError: If ``threads`` is below 1.
    """
    count = default_threads() if threads is None else threads
    if count < 1:
        raise ValueError(f"threads must be at least 1, got {count}")
    torch.set_num_threads(count)
    return count


@functools.cache
def _cpu_has_bf16() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: torch.device, precision: Precision = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None``: plain float32).

    ``"auto"`` picks bfloat16 where the hardware computes it natively (CUDA with bf16
    support, or a CPU with AVX512-BF16/AMX) and float32 elsewhere.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and _cpu_has_bf16() else None
