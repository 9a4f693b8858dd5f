"""Why does try 8's poison work and the key's poison less? Variants side by side, small set.

On an H200 (docs/results.md), `poison_probe.py`'s poison (40 steps against `resnet_small`,
random start, the true label's next class) held a pirate at 0.13, and ``protect
--poison-steps 20`` (20 steps against the ensemble of the key's targets, from the network's
image, the predicted class's next) at 0.64. This script crafts both and the variants between
them on ``--train-images`` images, trains the same pirate on each and on the originals, and
prints final clean-test accuracy per variant.

Example::

    python benchmarks/poison_variants.py --train-images 2000 --test-images 1000 --epochs 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import load_subset, write_result
from poison_probe import craft
from recipe_scan import like, pirate, protect_images

from invprotect.models import RAEG
from invprotect.models.poison import PoisonConfig, TargetedPoison
from invprotect.targets import Classifier, Ensemble

REFERENCE = Path(__file__).resolve().parent / "reference" / "cifar10-h200"
VARIANTS = {
    "probe": "try 8's poison: 40 steps, resnet_small, random start, true labels",
    "probe-20": "the same with 20 steps",
    "key-20-ensemble": "the key's default: 20 steps, resnet_small + convnet_small, network start",
    "key-40-resnet": "the key's poison with 40 steps against resnet_small alone",
}


def main() -> None:
    """Craft each variant, train a pirate on it, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--arch", default="convnet_small")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/poison_variants.json"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    train = load_subset(args.data / "train", args.train_images, 0)
    test = load_subset(args.data / "test", args.test_images, 0)
    resnet = Classifier.load(REFERENCE / "resnet_small")
    both = Ensemble([resnet, Classifier.load(REFERENCE / "convnet_small")])
    network = protect_images(RAEG.load(REFERENCE / "protector"), train.images)
    rows = {"originals": {"accuracy": pirate(args.arch, train, test, args.epochs, seed=1)}}
    print("originals", rows["originals"], flush=True)
    for name in args.variants:
        begun = time.time()
        if name.startswith("probe"):
            steps = 40 if name == "probe" else 20
            out = []
            generator = torch.Generator().manual_seed(0)
            for chunk, labels in zip(train.images.split(500), train.labels.split(500), strict=True):
                targets = (labels + 1) % len(train.classes)
                x = chunk.float() / 255
                config = PoisonConfig(steps=steps)
                out.append(craft(Ensemble([resnet]), x, targets, config, [], generator))
            pixels = (torch.cat(out) * 255).round().to(torch.uint8)
        else:
            model, steps = (both, 20) if name == "key-20-ensemble" else (Ensemble([resnet]), 40)
            poison = TargetedPoison(model, 32, PoisonConfig(steps=steps))
            pixels = torch.cat(
                [
                    poison.refine(chunk, levels.float()).to(torch.uint8)
                    for chunk, levels in zip(
                        train.images.split(500), network.split(500), strict=True
                    )
                ]
            )
        crafted = time.time() - begun
        accuracy = pirate(args.arch, like(train, pixels), test, args.epochs, seed=1)
        change = (pixels.float() - train.images.float()).square().mean()
        rows[name] = {
            "what": VARIANTS[name],
            "psnr": round(float(10 * torch.log10(255**2 / change)), 2),
            "accuracy": accuracy,
            "craft_seconds": round(crafted, 1),
        }
        print(name, rows[name], flush=True)
    write_result({"images": len(test), "rows": rows}, args, started)


if __name__ == "__main__":
    main()
