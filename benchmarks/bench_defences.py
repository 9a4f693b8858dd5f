"""Benchmark the defences on CIFAR-10: cost per image and how much each changes its input.

For every defence spec (the classic ones with the paper's settings, ComDefend and
DIPDefend) the script measures, on CIFAR-10 test images (the local ImageFolder found by
:func:`invprotect.data.default_cifar10_root`, images as stored, 32x32):

* **Seconds per image**: wall time (``time.perf_counter``) of one pass of the defence
  over ``--images`` test images in batches of ``--batch-size`` (DIPDefend: ``--dip-images``
  in batches of ``--dip-batch-size``), divided by the number of images, after one
  untimed warm-up batch. ``torch.set_num_threads(--threads)``.
* **PSNR (dB)**: mean over images of the PSNR of the defence's 8-bit output against its
  input (peak 1; an unchanged image counts as 100 dB). This is what the defence costs
  clean images, not how well it removes a protection.

ComDefend must be trained first: with ``--train-comdefend EPOCHS`` the script trains it
on the whole CIFAR-10 training split (:func:`invprotect.defences.train_comdefend`, the
``"cpu"`` preset, batch ``--comdefend-batch-size``, seed ``--seed``), records the training
wall time and the reconstruction PSNR on the whole test split, and saves the checkpoint
to ``--comdefend-weights`` (default ``benchmarks/out/comdefend-cifar10``); without it, an
existing checkpoint there is used, and ComDefend is skipped if there is none.

It prints a markdown table and writes JSON (``--json``, default
``benchmarks/out/bench_defences.json``) with machine information, date, settings and
wall time. ``--quick`` shrinks every count to check that the script works; its numbers
are not meaningful.

Example:
    .venv/bin/python benchmarks/bench_defences.py --quick
    nohup .venv/bin/python benchmarks/bench_defences.py --train-comdefend 8 > bench.log 2>&1 &
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from invprotect.data import ImageSet, default_cifar10_root, load_image_set, train_test_split
from invprotect.defences import (
    ComDefend,
    Defence,
    DIPDefend,
    create_defence_from_spec,
    to_8bit_grid,
    train_comdefend,
)
from invprotect.metrics import psnr

CLASSIC_SPECS = (
    "jpeg:quality=90",
    "jpeg:quality=50",
    "resize:scale=0.75",
    "resize:scale=0.5",
    "gaussian_noise:sigma=8",
    "median_filter:kernel_size=3",
    "gaussian_blur:sigma=1",
    "grayscale",
    "bit_depth:bits=4",
)
OUT = Path(__file__).resolve().parent / "out"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="test images per classic defence")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--dip-images", type=int, default=32)
    parser.add_argument("--dip-batch-size", type=int, default=16)
    parser.add_argument("--dip-iterations", type=int, default=500, help="DIPDefend max_iterations")
    parser.add_argument("--train-comdefend", type=int, metavar="EPOCHS", default=0)
    parser.add_argument("--comdefend-batch-size", type=int, default=32)
    parser.add_argument("--comdefend-weights", type=Path, default=OUT / "comdefend-cifar10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=OUT / "cache")
    parser.add_argument("--json", type=Path, default=OUT / "bench_defences.json")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the script only")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.batch_size, args.dip_images, args.dip_batch_size = 16, 8, 2, 2
        args.dip_iterations = min(args.dip_iterations, 20)
    return args


def time_defence(defence: Defence, images: ImageSet, count: int, batch_size: int) -> dict[str, Any]:
    """Seconds per image and mean PSNR of one pass over the first ``count`` images."""
    count = min(count, len(images))
    defence(images.batch(range(min(batch_size, count))))  # warm-up, untimed
    psnrs, kept, stopped = [], [], []
    started = time.perf_counter()
    for start in range(0, count, batch_size):
        batch = images.batch(range(start, min(count, start + batch_size)))
        if isinstance(defence, DIPDefend):  # the same work as defence(batch), plus diagnostics
            result = defence.reconstruct(batch)
            out = to_8bit_grid(result.images)
            kept.append(result.kept_iterations.float())
            stopped.append(result.stopped_iterations.float())
        else:
            out = defence(batch)
        psnrs.append(psnr(out, batch).clamp(max=100.0))
    seconds = time.perf_counter() - started
    report = {
        "images": count,
        "seconds_per_image": seconds / count,
        "psnr_db": torch.cat(psnrs).mean().item(),
    }
    if kept:
        report["mean_kept_iteration"] = torch.cat(kept).mean().item()
        report["mean_stopped_iteration"] = torch.cat(stopped).mean().item()
    return report


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    root = default_cifar10_root()
    if root is None:
        print("CIFAR-10 not found: set INVPROTECT_CIFAR10 to an ImageFolder with train/ and test/")
        return 1
    train_index, test_index = train_test_split(root)
    test = load_image_set(test_index, cache_dir=args.cache_dir)
    report: dict[str, Any] = {
        "benchmark": "bench_defences",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {"root": str(root), "test_images": len(test)},
        "defences": {},
    }

    comdefend: ComDefend | None = None
    if args.train_comdefend > 0:
        train = load_image_set(train_index, cache_dir=args.cache_dir)
        if args.quick:
            train, test_for_psnr = train.subset(range(64)), test.subset(range(32))
        else:
            test_for_psnr = test
        print(f"training ComDefend: {len(train)} images, {args.train_comdefend} epochs", flush=True)
        last = [0.0]

        def report_step(step: Any) -> None:
            if step.step % 500 == 0 or step.step == step.total_steps:
                elapsed = time.perf_counter() - last[0]
                print(
                    f"  step {step.step}/{step.total_steps} epoch {step.epoch} "
                    f"loss {step.loss:.5f} batch PSNR {step.psnr:.2f} dB ({elapsed:.0f} s)",
                    flush=True,
                )

        last[0] = time.perf_counter()
        comdefend = train_comdefend(
            train,
            test_for_psnr,
            epochs=args.train_comdefend,
            batch_size=args.comdefend_batch_size,
            seed=args.seed,
            progress=report_step,
        )
        comdefend.save(args.comdefend_weights)
        report["comdefend_training"] = {
            "train_images": len(train),
            "test_images": len(test_for_psnr),
            "epochs": args.train_comdefend,
            "batch_size": args.comdefend_batch_size,
            "training_seconds": comdefend.metrics["seconds"],
            "training_cpu_seconds": comdefend.metrics["cpu_seconds"],
            "steps": comdefend.metrics["steps"],
            "test_psnr_db": comdefend.metrics["test_psnr"],
            "weights": str(args.comdefend_weights),
        }
        print(
            f"ComDefend trained in {comdefend.metrics['seconds']:.0f} s "
            f"({comdefend.metrics['cpu_seconds']:.0f} s CPU), "
            f"test PSNR {comdefend.metrics['test_psnr']:.2f} dB",
            flush=True,
        )
    elif (args.comdefend_weights / "config.json").is_file():
        comdefend = ComDefend.load(args.comdefend_weights)
        report["comdefend_training"] = {"weights": str(args.comdefend_weights), **comdefend.metrics}

    runs: list[tuple[str, Defence, int, int]] = [
        (spec, create_defence_from_spec(spec), args.images, args.batch_size)
        for spec in CLASSIC_SPECS
    ]
    if comdefend is not None:
        runs.append(("comdefend", comdefend, args.images, args.batch_size))
    dip_spec = f"dipdefend:max_iterations={args.dip_iterations},seed={args.seed}"
    runs.append(
        (dip_spec, create_defence_from_spec(dip_spec), args.dip_images, args.dip_batch_size)
    )

    for spec, defence, count, batch_size in runs:
        result = time_defence(defence, test, count, batch_size)
        report["defences"][spec] = result
        print(
            f"{spec}: {result['seconds_per_image'] * 1e3:.2f} ms/image, "
            f"PSNR {result['psnr_db']:.2f} dB",
            flush=True,
        )

    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")

    print()
    print("| defence | images | ms / image | PSNR vs input (dB) |")
    print("| --- | ---: | ---: | ---: |")
    notes = []
    for spec, result in report["defences"].items():
        print(
            f"| `{spec}` | {result['images']} | {result['seconds_per_image'] * 1e3:.2f} | "
            f"{result['psnr_db']:.2f} |"
        )
        if "mean_kept_iteration" in result:
            notes.append(
                f"{spec}: mean kept iteration {result['mean_kept_iteration']:.0f}, "
                f"mean stopping iteration {result['mean_stopped_iteration']:.0f}"
            )
    for note in notes:
        print(f"\n{note}")
    if "comdefend_training" in report and "training_seconds" in report["comdefend_training"]:
        info = report["comdefend_training"]
        print()
        print(
            f"ComDefend training: {info['train_images']} images, {info['epochs']} epochs, "
            f"{info['steps']} steps, {info['training_seconds']:.0f} s wall "
            f"({info['training_cpu_seconds']:.0f} s CPU); reconstruction PSNR on "
            f"{info['test_images']} test images: {info['test_psnr_db']:.2f} dB"
        )
    print(f"\nwall time {report['wall_seconds']:.0f} s; threads {args.threads}; JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
