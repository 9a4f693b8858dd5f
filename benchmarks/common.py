"""What the benchmarks share: machine record, memory readings, reference protector, subsets."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from invprotect.data import (
    ImageFolderIndex,
    ImageSet,
    default_cache_dir,
    load_image_set,
    scan_image_folder,
)

OUT = Path(__file__).resolve().parent / "out"
REFERENCE_PROTECTOR = OUT / "protector-v3" / "protector"
"""The reference RAEG protector of ``docs/results.md`` (trained by ``bench_protector.py``)."""
METHODS = [str(REFERENCE_PROTECTOR), "rae-igsm", "rae-cw", "rit-igsm"]
"""RAEG and the paper's baselines, as ``--protector`` takes them."""


def method_name(spec: str) -> str:
    """A protector's name in tables: ``RAEG`` for a checkpoint, else the baseline's name."""
    return "RAEG" if Path(spec).exists() else spec.upper()


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``"unknown"`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, Any]:
    """Versions, hardware, thread count, date and load average of this run."""
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # Other processes inflate wall times: record the load.
        "load_average": list(os.getloadavg()),
    }


def _status_mib(field: str) -> float:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"{field} not found in /proc/self/status")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB, from ``/proc/self/status``)."""
    return _status_mib("VmHWM")


def rss_mib() -> float:
    """Current resident memory of this process (MiB)."""
    return _status_mib("VmRSS")


def subset_index(index: ImageFolderIndex, count: int | None, seed: int) -> ImageFolderIndex:
    """A seeded random subset of ``count`` files (all of them for ``None``), in path order."""
    if count is None or count >= len(index):
        return index
    order = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))
    keep = sorted(order[:count].tolist())
    return ImageFolderIndex(index.root, index.classes, [index.samples[i] for i in keep])


def load_subset(root: Path, count: int | None, seed: int) -> ImageSet:
    """The decoded images of `subset_index` of the ImageFolder ``root`` (cached decoding)."""
    return load_image_set(
        subset_index(scan_image_folder(root), count, seed), None, default_cache_dir()
    )


def labelled_chunks(images: ImageSet, size: int) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Chunks of ``size`` images with their class names (for `Protector.encode`).

    As `invprotect protect` passes an ImageFolder's class folders: a poison pushes each
    image from its class.
    """
    names = [images.classes[i] for i in images.labels]
    for start in range(0, len(names), size):
        yield images.images[start : start + size], names[start : start + size]


def write_result(result: dict[str, Any], args: argparse.Namespace, started: float) -> None:
    """Add the options, the wall time since ``started`` and the machine; write ``args.out``."""
    result |= {"args": {key: str(value) for key, value in vars(args).items()}}
    result |= {"wall_s": round(time.time() - started, 1), "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
