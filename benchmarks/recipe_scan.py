"""The thief's quick proxy for protector recipes (issue: the thief's test).

For each recipe: train a protector against the targets, then measure what a thief gets

* at test time: the targets and an unseen family on protected test images, as they are and
  after each defence (Table 1's question), beside the originals after the same defence;
* by training: a pirate (``--pirate-arch``) trained on protected training images (as they
  are, and after each defence) and tested on clean test images (Table 3's question),
  beside a pirate trained on the originals.

``--prep`` holds the trained models: the targets (``--targets``, default ``resnet_small`` and
``convnet_small``), the families no protector sees (``--unseen``, default ``vgg_small``; missing
ones are left out), ``comdefend-seen`` (the ComDefend a recipe may train through) and
``comdefend-unseen`` (the thief's: another seed, other training images).
Results: one JSON per recipe under ``--out``, lines on stdout. A rerun skips recipes with a
JSON and measures a protector already saved under ``--out`` instead of training it again
(its ``train_s`` is then ``null``).

Example::

    python benchmarks/recipe_scan.py --recipes margin class-consistent --prep PREP
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from common import machine
from pytorch_msssim import ssim

from invprotect.data import ImageSet, default_cache_dir, load_image_set, train_test_split
from invprotect.defences import create_defence_from_spec
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.targets import Classifier, Ensemble
from invprotect.targets.accuracy import accuracy
from invprotect.training import ClassifierTrainingConfig, train_classifier
from invprotect.training.protector import ProtectorTrainingConfig, train_protector
from invprotect.training.recipes import PURIFYING_ATTACKS, RECIPES


def recipes(prep: Path) -> dict[str, dict[str, Any]]:
    """The recipe variants: name -> `ProtectorTrainingConfig` overrides.

    The library's `RECIPES`, plus variants that train through ``PREP/comdefend-seen`` or
    mix the class-consistent loss with the purifying attacks.
    """
    seen = str(prep / "comdefend-seen")
    table = {name: recipe.settings() for name, recipe in RECIPES.items()}
    consistent = table["class-consistent"]
    purifying = {"attacks": PURIFYING_ATTACKS}
    table["cc-purifiers"] = consistent | purifying | {"purifier": seen}
    table["cc-purifiers-smooth"] = table["cc-purifiers"] | {"smoothness": 0.02}
    table["cc-squeeze-smooth"] = consistent | purifying | {"smoothness": 0.02}
    table["margin-purifiers-smooth"] = purifying | {"purifier": seen, "smoothness": 0.02}
    return table


DEFENCES = ["none", "jpeg:quality=50", "jpeg:quality=10", "grayscale", "median_filter", "comdefend"]
"""Test-time defences of the proxy (``comdefend``: the thief's, ``PREP/comdefend-unseen``)."""


@torch.no_grad()
def protect_images(raeg: RAEG, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """8-bit protected images of ``uint8`` originals, as the files would hold them."""
    device = next(raeg.parameters()).device
    out = []
    for chunk in images.split(batch):
        protected = raeg.protect(chunk.to(device).float() / 255)
        out.append((protected * 255).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(out)


def affordable_steps(
    targets: list[Classifier],
    images: ImageSet,
    settings: dict[str, Any],
    seconds: float,
    device: str,
    probe_steps: int = 12,
) -> int:
    """How many protector steps of ``settings`` fit in ``seconds`` on ``device``.

    Times a throwaway protector's steps after the first four (warm-up), so the
    estimate includes whatever else shares the device at the time.
    """
    stamps: list[float] = []
    raeg = RAEG.from_preset("cpu-32").to(device)
    config = ProtectorTrainingConfig(steps=probe_steps, **settings)
    train_protector(
        raeg, Ensemble(targets), images, config, on_event=lambda _: stamps.append(time.time())
    )
    per_step = (stamps[-1] - stamps[3]) / (len(stamps) - 4)
    return max(1, int(seconds / per_step))


@torch.no_grad()
def purify(spec: str, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """``uint8`` images after the defence ``spec`` (``"none"``: unchanged)."""
    if spec == "none":
        return images
    defence = create_defence_from_spec(spec)
    out = [
        (defence(chunk.float() / 255) * 255).round().to(torch.uint8)
        for chunk in images.split(batch)
    ]
    return torch.cat(out)


def like(base: ImageSet, images: torch.Tensor) -> ImageSet:
    """``base`` with other pixels."""
    return ImageSet(images, base.labels, base.classes, base.paths)


def pirate(
    arch: str, train: ImageSet, test: ImageSet, epochs: int, seed: int, device: str = "cpu"
) -> list[float]:
    """Clean-test accuracy per epoch of a classifier trained on ``train`` (on ``device``)."""
    torch.manual_seed(seed)
    model = Classifier(arch, train.classes).to(device)
    history = train_classifier(model, train, test, ClassifierTrainingConfig(epochs=epochs))
    return [round(record["test_accuracy"], 4) for record in history]


def main() -> None:
    """Run the scan."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="*", default=[], help="none: the originals only")
    parser.add_argument("--prep", type=Path, required=True, help="targets and ComDefends")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="instead of --steps: as many steps as fit in this many seconds (timed on a probe)",
    )
    parser.add_argument("--no-originals", action="store_true", help="skip the originals' row")
    parser.add_argument(
        "--override",
        type=json.loads,
        default={},
        help="JSON of ProtectorTrainingConfig fields set in every recipe, e.g. '{\"alpha\": 1.0}'",
    )
    parser.add_argument("--device", default="cpu", help="where protectors and pirates train")
    parser.add_argument("--target-psnr", type=float, default=30.0)
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--test-images", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pirate-arch", default="resnet_small")
    parser.add_argument("--targets", nargs="+", default=["resnet_small", "convnet_small"])
    parser.add_argument("--unseen", nargs="+", default=["vgg_small"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--defences", nargs="+", default=DEFENCES)
    parser.add_argument("--pirate-defences", nargs="+", default=["none", "jpeg:quality=10"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/recipes"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train_index, test_index = train_test_split(args.data)
    train = load_image_set(train_index, None, default_cache_dir())
    test = load_image_set(test_index, None, default_cache_dir())
    generator = torch.Generator().manual_seed(0)
    train_sub = train.subset(torch.randperm(len(train), generator=generator)[: args.train_images])
    test_sub = test.subset(torch.randperm(len(test), generator=generator)[: args.test_images])
    targets = [Classifier.load(args.prep / name, args.device) for name in args.targets]
    unseen_paths = [args.prep / name for name in args.unseen if (args.prep / name).is_dir()]
    unseen = [Classifier.load(path, args.device) for path in unseen_paths]
    thief_comdefend = f"comdefend:weights={args.prep / 'comdefend-unseen'}"
    defences = [thief_comdefend if spec == "comdefend" else spec for spec in args.defences]
    table = recipes(args.prep)

    originals_path = args.out / f"originals-{args.pirate_arch}-{args.epochs}.json"
    if not (args.no_originals or originals_path.is_file()):
        started = time.time()
        rows = {
            spec: [
                accuracy(model, like(test_sub, purify(spec, test_sub.images)))
                for model in [*targets, *unseen]
            ]
            for spec in defences
        }
        curves = {}
        for spec in args.pirate_defences:
            spec = thief_comdefend if spec == "comdefend" else spec
            cleaned = like(train_sub, purify(spec, train_sub.images))
            curves[spec] = pirate(
                args.pirate_arch, cleaned, test_sub, args.epochs, seed=1, device=args.device
            )
            print("originals", spec, curves[spec], flush=True)
        result = {"test_time": rows, "pirate": curves, "wall_s": time.time() - started}
        originals_path.write_text(json.dumps(result | {"machine": machine()}, indent=1))
        print("originals", json.dumps(result), flush=True)

    for name in args.recipes:
        tag = f"{args.seconds:g}s" if args.seconds else str(args.steps)
        path = args.out / f"{name}-{tag}.json"
        if path.is_file():
            print(name, path.read_text(), flush=True)
            continue
        started = time.time()
        saved = args.out / f"{name}-{tag}-protector"
        settings = {
            "target_psnr": args.target_psnr,
            "batch_size": args.batch_size,
            "lr": args.lr,
            **table[name],
            **args.override,
        }
        if (saved / "config.json").is_file():  # trained by an interrupted run: measure it
            raeg, trained_s = RAEG.load(saved, args.device).eval(), None
            steps = raeg.metadata.get("steps")
        else:
            steps = args.steps
            if args.seconds:
                steps = affordable_steps(targets, train_sub, settings, args.seconds, args.device)
            torch.manual_seed(0)
            raeg = RAEG.from_preset("cpu-32").to(args.device)
            config = ProtectorTrainingConfig(steps=steps, **settings)
            train_protector(raeg, Ensemble(targets), train, config)
            raeg.eval()
            raeg.metadata = {
                **raeg.metadata,
                "steps": steps,
                "recipe": name,
                "targets": [str(args.prep / target) for target in args.targets],
            }
            raeg.save(saved)
            trained_s = time.time() - started
            print(name, f"protector: {steps} steps in {trained_s:.0f} s", flush=True)
        protected_test = protect_images(raeg, test_sub.images)
        x, p = test_sub.images.float() / 255, protected_test.float() / 255
        quality = {
            "psnr": psnr(p, x).mean().item(),
            "ssim": ssim(p, x, data_range=1.0, win_size=7).item(),
        }
        rows = {
            spec: [
                accuracy(model, like(test_sub, purify(spec, protected_test)))
                for model in [*targets, *unseen]
            ]
            for spec in defences
        }
        protected_train = protect_images(raeg, train_sub.images)
        curves = {}
        for spec in args.pirate_defences:
            spec = thief_comdefend if spec == "comdefend" else spec
            cleaned = like(train_sub, purify(spec, protected_train))
            curves[spec] = pirate(
                args.pirate_arch, cleaned, test_sub, args.epochs, seed=1, device=args.device
            )
            print(name, spec, curves[spec], flush=True)
        result = {
            "recipe": name,
            "overrides": dict(table[name]) | args.override,
            "steps": steps,
            "seconds_budget": args.seconds,
            "device": args.device,
            "train_images": len(train_sub),
            "test_images": len(test_sub),
            "pirate_epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "targets": args.targets,
            "unseen": [name for name in args.unseen if (args.prep / name).is_dir()],
            "quality": quality,
            "test_time": rows,
            "pirate": curves,
            "train_s": trained_s,
            "wall_s": time.time() - started,
            "machine": machine(),
        }
        path.write_text(json.dumps(result, indent=1))
        print(name, json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
