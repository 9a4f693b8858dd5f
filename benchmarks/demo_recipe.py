"""One protector recipe at the demo's size: train it against saved targets and measure it.

Trains the ``cpu-32`` protector on the demo's training images (the seeded subset
`invprotect demo` uses) against target classifiers saved by a demo run, with
`ProtectorTrainingConfig` fields changed by ``--set``, then measures the targets on the
demo's test files (the first ``test_per_class`` of each class), protected and rounded to
8 bits: the figures of the demo's report, without its files (``A_prt``, the float network;
``A_prt_files``, the fixed-point twin's images that files hold). Appends one JSON line to
``--out`` and prints it.

Example (targets of a finished ``invprotect demo --out /tmp/demo``)::

    python benchmarks/demo_recipe.py --name b8 --targets /tmp/demo/targets --set '{"steps": 440}'
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from common import machine
from pytorch_msssim import ssim

from invprotect.data import load_image_set, train_test_split
from invprotect.demo import DemoConfig
from invprotect.files.images import read_rgb
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from invprotect.targets import Classifier, Ensemble
from invprotect.training.protector import ProtectorTrainingConfig, train_protector


def demo_test_files(test_index, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The demo's test images in ``[0, 1]`` and their labels (first ``per_class`` per class)."""
    chosen: dict[int, int] = {}
    paths, labels = [], []
    for path, label in test_index.samples:
        if chosen.get(label, 0) < per_class:
            chosen[label] = chosen.get(label, 0) + 1
            paths.append(path)
            labels.append(label)
    return torch.stack([read_rgb(p) for p in paths]).float() / 255, torch.tensor(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="name of this try in the output")
    parser.add_argument("--targets", type=Path, required=True, help="folder of saved targets")
    parser.add_argument("--archs", nargs="+", default=list(DemoConfig().target_archs))
    parser.add_argument("--set", default="{}", help="ProtectorTrainingConfig fields, as JSON")
    parser.add_argument("--generator", default=None, help="UNetConfig fields, as JSON")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/demo_recipe.jsonl"))
    parser.add_argument(
        "--relaxed",
        action="store_true",
        help="train an integer network's continuous relaxation (it rounds only when protecting)",
    )
    parser.add_argument("--save", type=Path, default=None, help="write the protector (key) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    demo = DemoConfig()
    settings = {
        "steps": demo.protector_steps,
        "batch_size": demo.batch_size,
        "lr": demo.protector_lr,
        "target_psnr": demo.target_psnr,
        "seed": demo.seed,
    } | json.loads(args.set)
    config = ProtectorTrainingConfig(**settings)

    train_index, test_index = train_test_split(args.data)
    keep = torch.randperm(len(train_index), generator=torch.Generator().manual_seed(demo.seed))
    train_index.samples = [
        train_index.samples[i] for i in sorted(keep[: demo.train_images].tolist())
    ]
    train = load_image_set(train_index, size=32, cache_dir=args.cache_dir)
    members = [Classifier.load(args.targets / arch).eval() for arch in args.archs]
    torch.manual_seed(demo.seed)
    overrides = {"generator": json.loads(args.generator)} if args.generator else {}
    raeg = RAEG.from_preset("cpu-32", **overrides)
    started = time.perf_counter()
    raeg.generator.rounding = not args.relaxed
    events = train_protector(raeg, Ensemble(members), train, config)
    raeg.generator.rounding = True
    train_s = time.perf_counter() - started

    x, labels = demo_test_files(test_index, demo.test_per_class)
    with torch.no_grad():
        protected = (raeg.eval().protect(x).clamp(0, 1) * 255).round() / 255
        files = ExactCodec(raeg).encode((x * 255).round().to(torch.uint8))[0].float() / 255

        def accuracy(images: torch.Tensor) -> list[float]:
            return [
                round((member(images).argmax(1) == labels).float().mean().item(), 3)
                for member in members
            ]

        result = {
            "name": args.name,
            "settings": asdict(config) | {"attacks": settings.get("attacks")},
            "generator": overrides.get("generator"),
            "relaxed": args.relaxed,
            "archs": args.archs,
            "A_ori": accuracy(x),
            "A_prt": accuracy(protected),
            "A_prt_files": accuracy(files),
            "P_prt_files": round(psnr(files, x).clamp(max=100).mean().item(), 2),
            "P_prt": round(psnr(protected, x).clamp(max=100).mean().item(), 2),
            "S_prt": round(ssim(protected, x, data_range=1.0).item(), 4),
            "train_s": round(train_s, 1),
            "last_step": asdict(events[-1]),
            "machine": machine(),
        }
    if args.save is not None:
        raeg.save(args.save)
    print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as file:
        file.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
