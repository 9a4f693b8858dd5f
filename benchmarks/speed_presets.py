"""Throughput of ``RAEG.protect`` and ``RAEG.recover`` for each preset on one device.

Untrained weights (speed does not depend on them): ``cpu-32`` at 32x32 and ``paper`` at
256x256, tensor in to tensor out, in images per second over at least ``--seconds`` each
after a warm-up (CUDA work is synchronised before the clock is read). Prints a table and
writes JSON (``--json``).

Example:
    .venv/bin/python benchmarks/speed_presets.py --seconds 2
    python benchmarks/speed_presets.py --device cuda --batches 64 16
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import machine
from torch import Tensor

from invprotect.models import RAEG

OUT = Path(__file__).resolve().parent / "out"
PRESETS = ("cpu-32", "paper")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--batches", type=int, nargs=2, default=(256, 4), help="batch of cpu-32 and of paper"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=OUT / "speed_presets.json")
    return parser.parse_args(argv)


def images_per_second(
    step: Callable[[Tensor], Tensor], x: Tensor, seconds: float, sync: Callable[[], None]
) -> float:
    """Images per second of ``step`` on batch ``x``, after one warm-up call."""
    step(x)
    sync()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step(x)
        done += x.shape[0]
    sync()
    return done / (time.perf_counter() - started)


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    """Time every preset and write the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    rows: list[dict[str, Any]] = []
    for preset, batch in zip(PRESETS, args.batches, strict=True):
        torch.manual_seed(0)
        raeg = RAEG.from_preset(preset).to(device).eval()
        side = raeg.config.image_size
        x = torch.rand(batch, 3, side, side, device=device)
        rows.append(
            {
                "preset": preset,
                "size": side,
                "batch": batch,
                "parameters": sum(p.numel() for p in raeg.generator.parameters()),
                "protect_images_per_s": images_per_second(raeg.protect, x, args.seconds, sync),
                "recover_images_per_s": images_per_second(raeg.recover, x, args.seconds, sync),
            }
        )
    report = {"rows": rows, "machine": machine() | {"device": str(device)}}
    if device.type == "cuda":
        report["machine"]["gpu"] = torch.cuda.get_device_name(device)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("| preset | size | batch | generator parameters | protect img/s | recover img/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['size']} | {r['batch']} | {r['parameters'] / 1e6:.2f} M | "
            f"{r['protect_images_per_s']:,.1f} | {r['recover_images_per_s']:,.1f} |"
        )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
