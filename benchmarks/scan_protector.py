r"""Train protector variants side by side and compare them on held-out CIFAR-10 images.

Each variant is a set of `ProtectorTrainingConfig` overrides (``--variants``, a JSON list of
objects, e.g. ``[{"target_psnr": 30}, {"target_psnr": 29.5, "alpha": 0.05}]``), plus two
keys of its own: ``"architecture"`` (``"encoder-decoder"``: the paper's ablation
generator; see `RAEGConfig`) and ``"targets"`` (checkpoint paths replacing ``--targets``
for that variant; accuracy is still measured on every ``--targets`` model). Every
variant trains a fresh ``cpu-32`` RAEG in its own process, ``--workers`` at a time
(default: all at once; on a GPU they share the card; on a CPU give each one thread).
``--budget-seconds`` fixes the training time
instead of the step count: a 30-step probe, run by all variants at once, measures the
speed and sets ``steps`` (at most ``--steps``), so the learning-rate schedule completes.

Each variant is then measured on ``--eval-images`` seeded random test images: P_prt and
S_prt (8-bit protected images), P_rev of the network's own recovery (no exactness
residual), A_prt per ``--targets`` and ``--unseen`` model, A_prt after each of
``--defences`` (real JPEG 50 by default) and their mean (A_def), and the mean PSNR on
``--train-check`` training images (the knob). Prints a table and
writes JSON (``--json``); ``--save-dir`` keeps the trained protectors.

Example:
    .venv/bin/python benchmarks/scan_protector.py --quick
    python benchmarks/scan_protector.py --device cuda --budget-seconds 300 \
        --variants '[{"target_psnr": 30}, {"target_psnr": 29, "alpha": 0.2}]'
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from common import machine
from pytorch_msssim import ssim

from invprotect.attacks import quantize_ste
from invprotect.data import ImageSet, default_cifar10_root, load_image_set, train_test_split
from invprotect.defences import create_defence_from_spec
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.targets import Classifier, Ensemble
from invprotect.training.protector import ProtectorTrainingConfig, held_psnr, train_protector

OUT = Path(__file__).resolve().parent / "out"
TARGETS = Path(__file__).resolve().parent.parent / "runs" / "targets"
PROBE_STEPS = 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: local CIFAR-10")
    parser.add_argument("--targets", type=Path, nargs="+", default=None)
    parser.add_argument("--unseen", type=Path, nargs="*", default=[])
    parser.add_argument("--defences", nargs="+", default=["jpeg:quality=50"])
    parser.add_argument("--variants", default='[{"target_psnr": 30.0}]')
    parser.add_argument("--steps", type=int, default=10000, help="most steps per variant")
    parser.add_argument("--budget-seconds", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--workers", type=int, default=None, help="variants trained at once (default: all)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--train-check", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=OUT / "scan_protector.json")
    parser.add_argument("--save-dir", type=Path, default=None, help="keep protector N in DIR/N")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the script only")
    args = parser.parse_args(argv)
    args.targets = args.targets or [TARGETS / "resnet_small", TARGETS / "vgg_small"]
    args.variants = json.loads(args.variants)
    if not isinstance(args.variants, list) or not all(isinstance(v, dict) for v in args.variants):
        parser.error("--variants must be a JSON list of objects")
    args.workers = min(args.workers or len(args.variants), len(args.variants))
    if args.budget_seconds is not None and args.workers < len(args.variants):
        parser.error("--budget-seconds measures all variants at once: leave --workers out")
    if args.quick:
        args.steps, args.eval_images, args.train_check, args.budget_seconds = 4, 64, 64, None
    return args


def load_data(args: argparse.Namespace) -> tuple[ImageSet, ImageSet]:
    """The training and test splits at 32x32 (decoded copies cached under ``benchmarks/out``)."""
    data = args.data or default_cifar10_root()
    if data is None:
        sys.exit("no CIFAR-10 here: pass --data")
    train_index, test_index = train_test_split(data)
    return (
        load_image_set(train_index, 32, OUT / "cache"),
        load_image_set(test_index, 32, OUT / "cache"),
    )


def run_variant(args: argparse.Namespace, number: int, barrier: Any, results: Any) -> None:
    """Train and measure one variant (the body of each worker process)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train_set, test = load_data(args)
    members = {p.name: Classifier.load(p, device) for p in [*args.targets, *args.unseen]}
    overrides = dict(args.variants[number])
    architecture = overrides.pop("architecture", "invertible")
    trained_against = [Path(p) for p in overrides.pop("targets", args.targets)]
    ensemble = Ensemble([Classifier.load(p, device) for p in trained_against])
    config = replace(ProtectorTrainingConfig(steps=args.steps, seed=args.seed), **overrides)
    with tempfile.TemporaryDirectory() as scratch:
        if args.budget_seconds is not None:
            torch.manual_seed(args.seed)
            probe = RAEG.from_preset("cpu-32", architecture=architecture).to(device)
            barrier.wait()
            started = time.perf_counter()
            train_protector(
                probe,
                ensemble,
                train_set,
                replace(config, steps=PROBE_STEPS),
                Path(scratch) / "probe",
            )
            per_step = (time.perf_counter() - started) / PROBE_STEPS
            config = replace(
                config, steps=max(1, min(args.steps, int(args.budget_seconds / per_step)))
            )
        torch.manual_seed(args.seed)
        raeg = RAEG.from_preset("cpu-32", architecture=architecture).to(device)
        started = time.perf_counter()
        events = train_protector(raeg, ensemble, train_set, config, Path(scratch) / "train")
        seconds = time.perf_counter() - started
    raeg.eval()
    if args.save_dir is not None:
        raeg.save(args.save_dir / str(number))
    last = events[-1]
    record = {
        "variant": args.variants[number],
        "steps": config.steps,
        "train_seconds": seconds,
        "final_smoothed_psnr": last.smoothed_psnr,
    } | evaluate(raeg, members, test, train_set, args)
    results.put((number, record))


@torch.no_grad()
def evaluate(
    raeg: RAEG,
    members: dict[str, Classifier],
    test: ImageSet,
    train_set: ImageSet,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Quality, accuracy with and without defences on test images; PSNR on training images."""
    device = next(raeg.parameters()).device
    defences = {spec: create_defence_from_spec(spec) for spec in args.defences}
    count = min(args.eval_images, len(test))
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[:count]
    correct = {key: dict.fromkeys(members, 0) for key in ("prt", *defences)}
    sums = dict.fromkeys(("P_prt", "S_prt", "P_rev_net"), 0.0)
    for start in range(0, count, 500):
        index = chosen[start : start + 500]
        x, labels = test.batch(index, device=device), test.labels[index].to(device)
        protected = quantize_ste(raeg.protect(x))
        variants = {"prt": protected}
        for spec, defence in defences.items():
            torch.manual_seed(args.seed)  # a stochastic defence draws the same noise each time
            variants[spec] = defence(protected.cpu()).to(device)
        for key, images in variants.items():
            for name, model in members.items():
                correct[key][name] += (model(images).argmax(1) == labels).sum().item()
        sums["P_prt"] += psnr(protected, x).clamp(max=100.0).sum().item()
        sums["S_prt"] += ssim(protected, x, data_range=1.0, size_average=False).sum().item()
        network = quantize_ste(raeg.recover(protected))
        sums["P_rev_net"] += psnr(network, x).clamp(max=100.0).sum().item()
    accuracy = {key: {n: c / count for n, c in v.items()} for key, v in correct.items()}
    report: dict[str, Any] = {"A_prt": accuracy.pop("prt"), "A_defences": accuracy}
    targets = [p.name for p in args.targets]
    report["A_def"] = sum(a[n] for a in accuracy.values() for n in targets) / max(
        1, len(accuracy) * len(targets)
    )
    report |= {key: value / count for key, value in sums.items()}
    report["train_psnr"] = held_psnr(
        raeg, train_set, min(args.train_check, len(train_set)), args.seed
    )
    return report


def markdown(records: list[dict[str, Any]], names: list[str]) -> str:
    """The comparison table (accuracy columns: one value per model of ``names``)."""
    lines = [
        "| variant | steps | train s | P_prt | S_prt | P_rev (network) "
        f"| A_prt ({' / '.join(names)}) | A_def (mean of defences and targets) | PSNR on train |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        accuracy = " / ".join(f"{r['A_prt'][n]:.3f}" for n in names)
        lines.append(
            f"| {json.dumps(r['variant'])} | {r['steps']} | {r['train_seconds']:.0f} | "
            f"{r['P_prt']:.2f} | {r['S_prt']:.3f} | {r['P_rev_net']:.2f} | {accuracy} | "
            f"{r['A_def']:.3f} | {r['train_psnr']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the variants (``--workers`` at a time) and write the comparison."""
    args = parse_args(argv)
    wall = time.perf_counter()
    load_data(args)  # decode once, so the workers read the cache
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(args.workers), context.Queue()
    waiting = list(range(len(args.variants)))
    running: list[Any] = []
    records: dict[int, dict[str, Any]] = {}
    while len(records) < len(args.variants):
        running = [worker for worker in running if worker.is_alive()]
        while waiting and len(running) < args.workers:
            worker = context.Process(
                target=run_variant, args=(args, waiting.pop(0), barrier, results)
            )
            worker.start()
            running.append(worker)
        try:
            number, record = results.get(timeout=5)
            records[number] = record
        except queue.Empty:
            running = [worker for worker in running if worker.is_alive()]
            if not running and not waiting and results.empty():
                failed = len(args.variants) - len(records)
                sys.exit(f"{failed} variant(s) failed; see the errors above")
    ordered = [records[number] for number in range(len(args.variants))]
    names = [p.name for p in [*args.targets, *args.unseen]]
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "variants": ordered,
        "machine": machine() | {"device": args.device},
        "wall_seconds": time.perf_counter() - wall,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(ordered, names))
    print(f"wrote {args.json}; wall {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
