"""Images per second of protector training (``invprotect train``) in 1 and in N processes.

Each row runs `train_protector`, the loop of ``invprotect train``, on CIFAR-10 training
images with the same global batch: in one process, and in ``N`` gloo processes started
with ``torch.multiprocessing`` (as ``torchrun --nproc-per-node N`` would start them), each
with ``--threads`` intra-op threads. The targets are untrained classifiers of the given
architectures (the cost of a step does not depend on their weights). After
``--warmup`` steps, the wall time of ``--steps`` steps gives global images per second.

The rows run one after the other; other processes on the machine change them, so the
load average before and after each row is recorded with it.

Example:
    .venv/bin/python benchmarks/bench_distributed.py --processes 1 2 --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import machine

from invprotect import distributed
from invprotect.data import default_cifar10_root, load_image_set, scan_image_folder
from invprotect.models import RAEG
from invprotect.targets import Classifier, Ensemble
from invprotect.training.protector import (
    ProtectorEvent,
    ProtectorTrainingConfig,
    train_protector,
)

OUT = Path(__file__).resolve().parent / "out"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="Intra-op threads per process.")
    parser.add_argument("--preset", default="cpu-32")
    parser.add_argument("--targets", nargs="+", default=["resnet_small", "convnet_small"])
    parser.add_argument("--batch-size", type=int, default=32, help="Global batch.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="Timed steps per row.")
    parser.add_argument("--images", type=int, default=2000, help="Training images loaded.")
    parser.add_argument("--json", type=Path, default=OUT / "distributed.json")
    return parser.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _timed_training(args: argparse.Namespace, result: Path) -> None:
    """Train for warm-up plus timed steps; rank 0 writes the timed seconds to ``result``."""
    torch.set_num_threads(args.threads)
    index = scan_image_folder(default_cifar10_root() / "train")
    index.samples = index.samples[:: max(1, len(index) // args.images)][: args.images]
    images = load_image_set(index, workers=1)
    torch.manual_seed(0)
    ensemble = Ensemble([Classifier(arch, images.classes).eval() for arch in args.targets])
    raeg = RAEG.from_preset(args.preset)
    config = ProtectorTrainingConfig(
        steps=args.warmup + args.steps, batch_size=args.batch_size, precision="fp32"
    )
    times: list[float] = []

    def clock(event: ProtectorEvent) -> None:
        times.append(time.perf_counter())

    distributed.barrier()
    train_protector(raeg, ensemble, images, config, on_event=clock)
    if distributed.is_main():
        result.write_text(json.dumps({"seconds": times[-1] - times[args.warmup - 1]}))


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, result: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _timed_training(args, result)
    finally:
        dist.destroy_process_group()


def _row(args: argparse.Namespace, processes: int) -> dict[str, float | int]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        if processes == 1:
            _timed_training(args, result)
        else:
            port = _free_port()
            mp.spawn(_worker, args=(processes, port, args, result), nprocs=processes)
        seconds = json.loads(result.read_text())["seconds"]
    return {
        "processes": processes,
        "threads_per_process": args.threads,
        "global_batch": args.batch_size,
        "timed_steps": args.steps,
        "seconds": round(seconds, 2),
        "images_per_s": round(args.steps * args.batch_size / seconds, 2),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    """Measure each process count of ``--processes``, print a table, write the JSON."""
    args = _parse(argv)
    if args.warmup < 1:
        sys.exit("--warmup must be at least 1 (the first step's time starts the clock)")
    rows = []
    for processes in args.processes:
        rows.append(_row(args, processes))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["images_per_s"]
    print(f"\n{'processes':>9} {'threads':>7} {'images/s':>9} {'speed-up':>8} {'load':>9}")
    for row in rows:
        load = f"{row['load_average_before']:.1f}-{row['load_average_after']:.1f}"
        speedup = row["images_per_s"] / base
        print(
            f"{row['processes']:>9} {row['threads_per_process']:>7} "
            f"{row['images_per_s']:>9.2f} {speedup:>7.2f}x {load:>9}"
        )
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    report = {"rows": rows, "settings": settings, "machine": machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
