"""Train CPU-sized target classifiers on CIFAR-10 and time the paper's four architectures.

For each small architecture the benchmark runs the real command,
``invprotect train-targets --data DATA --arch ARCH --epochs N --out OUT_DIR/ARCH``
(resumable: rerunning continues an interrupted training, and finished checkpoints are
reused), then reads the accuracy and timings from the checkpoint's JSON sidecar.
For the paper's torchvision architectures (VGG16, ResNet-50, ResNet-101,
DenseNet-121, adapted to 32x32) it times a measured fraction of an epoch: a few
training steps after a warm-up, extrapolated to a full epoch. Prints a markdown
table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.flop_counter import FlopCounterMode

from invprotect.data import default_cifar10_root
from invprotect.device import autocast_dtype
from invprotect.targets import Classifier

PAPER_ARCHS = ("vgg16", "resnet50", "resnet101", "densenet121")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_cifar10_root())
    parser.add_argument("--archs", default="vgg_small,resnet_small,densenet_small")
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/targets"))
    parser.add_argument("--paper-steps", type=int, default=5, help="timed steps per paper arch")
    parser.add_argument("--paper-batch", type=int, default=128)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/out/bench_targets.json"))
    parser.add_argument("--markdown", type=Path, default=None)
    return parser.parse_args()


def macs_per_image(model: torch.nn.Module) -> float:
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 32, 32))
    return counter.get_total_flops() / 2


def train_small(arch: str, args: argparse.Namespace) -> dict:
    out = args.out_dir / arch
    command = [
        *(sys.executable, "-m", "invprotect", "train-targets"),
        *("--data", str(args.data), "--arch", arch, "--epochs", str(args.epochs)),
        *("--out", str(out)),
    ]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    config = json.loads((out / "config.json").read_text())
    meta = config["metadata"]
    model = Classifier(arch, config["classes"])
    epoch_seconds = [h["seconds"] for h in meta["history"]]
    return {
        "arch": arch,
        "params": sum(p.numel() for p in model.parameters()),
        "macs_per_image": macs_per_image(model.eval()),
        "epochs": meta["epochs"],
        "seconds_per_epoch": statistics.median(epoch_seconds),
        "fastest_epoch_seconds": min(epoch_seconds),
        "seconds_total": meta["seconds"],
        "test_accuracy": meta["test_accuracy"],
        "precision": meta["training"]["precision"],
    }


def time_paper_arch(arch: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = Classifier(arch, [str(i) for i in range(10)]).to(memory_format=torch.channels_last)
    macs = macs_per_image(model.eval())
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    cast = autocast_dtype(torch.device("cpu"))
    x = torch.rand(args.paper_batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.paper_batch,))
    times = []
    for step in range(args.paper_steps + 1):  # the first step is a warm-up
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=cast or torch.float32, enabled=cast is not None):
            loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step:
            times.append(time.perf_counter() - started)
    images_per_second = args.paper_batch / statistics.median(times)
    return {
        "arch": arch,
        "params": sum(p.numel() for p in model.parameters()),
        "macs_per_image": macs,
        "measured_images": args.paper_batch * args.paper_steps,
        "train_images_per_second": images_per_second,
        "seconds_per_epoch": 50_000 / images_per_second,
    }


def markdown(report: dict) -> str:
    lines = [
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}; wall time {report['wall_seconds'] / 60:.1f} min",
        "",
        "| architecture | parameters | MMAC/image | epochs | s/epoch (median; min) | total min "
        "| test accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["small"]:
        lines.append(
            f"| {row['arch']} | {row['params'] / 1e6:.2f} M | {row['macs_per_image'] / 1e6:.0f} "
            f"| {row['epochs']} | {row['seconds_per_epoch']:.0f}; "
            f"{row['fastest_epoch_seconds']:.0f} | "
            f"{row['seconds_total'] / 60:.1f} | {row['test_accuracy']:.4f} |"
        )
    lines += [
        "",
        "Paper architectures at 32x32 (one epoch = 50,000 images, extrapolated from a measured "
        "fraction):",
        "",
        "| architecture | parameters | MMAC/image | measured images | images/s | s/epoch |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["paper"]:
        lines.append(
            f"| {row['arch']} | {row['params'] / 1e6:.1f} M | {row['macs_per_image'] / 1e6:.0f} "
            f"| {row['measured_images']} | {row['train_images_per_second']:.1f} "
            f"| {row['seconds_per_epoch']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    if args.data is None:
        raise SystemExit("CIFAR-10 not found: pass --data or set INVPROTECT_CIFAR10")
    started = time.perf_counter()
    small = [train_small(arch, args) for arch in args.archs.split(",") if arch]
    torch.set_num_threads(os.cpu_count() or 1)
    paper = [time_paper_arch(arch, args) for arch in PAPER_ARCHS]
    report = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - started,
        "small": small,
        "paper": paper,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    table = markdown(report)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
