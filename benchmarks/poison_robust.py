"""Which poison keeps its class features through the thief's squeezing: a CPU check for a GPU run.

JPEG at quality 10 and the thief's ComDefend undo most of the key's poison in a pirate's
training (try 9 of docs/results.md). Training pirates needs a GPU; what those defences leave of a
poison's class features does not. On ``--images`` seeded CIFAR-10 training images, each variant
crafts a class-consistent targeted poison (L-inf 8 levels, ``--steps`` signed steps, the key's
two targets, every image pushed from its label to the next class, through a pirate's flips and
shifts), and the table gives, after each of the thief's defences, the fraction of images that the
targets and an unseen family (``vgg_small`` of `benchmarks/reference/proxy`) classify as
``label + 1``. Variants:

- ``pixel``: one change per pixel (the key's `protect --poison-steps`);
- ``squeeze``: the loss also through Kornia's differentiable JPEG at quality 10 and grayscale;
- ``grid N``: the change drawn on an N x N grid and upsampled bilinearly (low frequencies,
  which JPEG keeps), with and without ``squeeze``;
- ``purifiers``: ``squeeze`` plus the recipes' own ComDefend (``comdefend-seen``, its
  binarisation passed straight through; the thief's ``comdefend-unseen`` is evaluated);
- ``l2 D``: an L2 budget instead of L-inf (`PoisonConfig.psnr`): each image's change holds
  the PSNR of ``D`` dB (per value at most 24 levels), normalised-gradient steps, so the
  change goes where it pays; with and without ``purifiers``.

Example::

    python benchmarks/poison_robust.py --images 300 --threads 2 --variants pixel "grid 16"
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import load_subset, write_result
from pytorch_msssim import ssim
from torch import Tensor, nn
from torch.nn import functional

from invprotect.attacks import create_attack
from invprotect.defences import ComDefend, create_defence_from_spec
from invprotect.metrics import psnr
from invprotect.models.poison import PoisonConfig, flip_and_shift, targeted_steps
from invprotect.targets import Classifier, Ensemble

HERE = Path(__file__).resolve().parent
KEY = HERE / "reference" / "cifar10-h200"
PROXY = HERE / "reference" / "proxy"
DEFENCES = [
    "none",
    "jpeg:quality=10",
    "grayscale",
    f"comdefend:weights={PROXY / 'comdefend-unseen'}",
]
# name: (grid side or 0, views, PSNR budget in dB or None for L-inf 8 levels)
VARIANTS = {
    "pixel": (0, "none", None),
    "squeeze": (0, "squeeze", None),
    "purifiers": (0, "purifiers", None),
    "grid 8": (8, "none", None),
    "grid 16": (16, "none", None),
    "grid 8 + squeeze": (8, "squeeze", None),
    "grid 16 + squeeze": (16, "squeeze", None),
    "l2 32.25": (0, "none", 32.25),
    "l2 32.25 + purifiers": (0, "purifiers", 32.25),
    "l2 30.5 + purifiers": (0, "purifiers", 30.5),
}


def craft(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    grid: int,
    views: list[Callable[[Tensor], Tensor]],
    steps: int,
    generator: torch.Generator,
    budget: float | None = None,
) -> Tensor:
    """Targeted PGD from the original, as ``uint8`` images.

    Per pixel, the product's loop (`targeted_steps`: L-inf 8 levels, or with a ``budget``
    the L2 ball of that PSNR in dB, 24 levels per value); with a grid, the L-inf steps
    on an N x N change, upsampled bilinearly.
    """
    config = PoisonConfig(steps=steps)
    if budget is not None:
        config = PoisonConfig(steps=steps, psnr=budget)  # values within 24 levels
    if grid == 0:
        out = targeted_steps(model, x, x, targets, config, generator, views)
        return out.mul(255).round().to(torch.uint8)
    eps = config.epsilon / 255
    change = torch.zeros(x.shape[0], 3, grid, grid)
    step = 2.5 * eps / steps

    def image(z: Tensor) -> Tensor:
        z = functional.interpolate(z, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (x + z).clamp(0, 1)

    with torch.enable_grad():
        for _ in range(steps):
            change.requires_grad_(True)
            seen = flip_and_shift(image(change), config.shift, generator)
            outputs = [model(seen)] + [model(view(seen)) for view in views]
            loss = sum(functional.cross_entropy(out, targets, reduction="sum") for out in outputs)
            (gradient,) = torch.autograd.grad(loss, change)
            with torch.no_grad():
                change = (change - step * gradient.sign()).clamp(-eps, eps)
    with torch.no_grad():
        return image(change).mul(255).round().to(torch.uint8)


def hits(images: Tensor, labels: Tensor, models: dict[str, nn.Module]) -> dict[str, dict]:
    """Per defence and model, the fraction of ``uint8`` images classified as ``label + 1``."""
    table = {}
    for spec in DEFENCES:
        x = images.float() / 255
        with torch.no_grad():
            if spec != "none":
                x = create_defence_from_spec(spec)(x).mul(255).round().div(255)
            table[spec.split(":weights")[0]] = {
                name: round(float((model(x).argmax(1) == (labels + 1) % 10).float().mean()), 4)
                for name, model in models.items()
            }
    return table


def main() -> None:
    """Craft every variant on the same images; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "poison_robust.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    train = load_subset(args.data / "train", args.images, 0)
    models = {
        "resnet_small": Classifier.load(KEY / "resnet_small"),
        "convnet_small": Classifier.load(KEY / "convnet_small"),
        "vgg_small (unseen)": Classifier.load(PROXY / "vgg_small"),
    }
    surrogates = Ensemble([models["resnet_small"], models["convnet_small"]])
    squeezers = [create_attack("jpeg_kornia", quality=10), create_attack("grayscale")]
    seen = ComDefend.load(PROXY / "comdefend-seen").eval().requires_grad_(False)
    views = {
        "none": [],
        "squeeze": squeezers,
        "purifiers": [*squeezers, seen.reconstruct_straight_through],
    }
    rows = {"originals": {"hits": hits(train.images, train.labels, models)}}
    for name in args.variants:
        grid, seen_through, budget = VARIANTS[name]
        begun = time.perf_counter()
        generator = torch.Generator().manual_seed(0)
        out = torch.cat(
            [
                craft(
                    surrogates,
                    images.float() / 255,
                    (labels + 1) % 10,
                    grid,
                    views[seen_through],
                    args.steps,
                    generator,
                    budget,
                )
                for images, labels in zip(
                    train.images.split(args.batch_size),
                    train.labels.split(args.batch_size),
                    strict=True,
                )
            ]
        )
        x, y = train.images.float() / 255, out.float() / 255
        rows[name] = {
            "seconds": round(time.perf_counter() - begun, 1),
            "psnr": round(float(psnr(y, x).mean()), 2),
            "ssim": round(float(ssim(y, x, data_range=1.0, win_size=7)), 4),
            "hits": hits(out, train.labels, models),
        }
        print(name, json.dumps(rows[name]), flush=True)
    write_result({"images": len(train), "rows": rows}, args, started)


if __name__ == "__main__":
    main()
