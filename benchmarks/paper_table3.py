"""The paper's Table 3 at CIFAR-10 scale: can a pirate train on the protected data set?

A pirate who collected the protected training set trains three classifier families
(``--archs``) on it and is judged on the clean test set. Pirates:

* ``protected``: trains on the protected images as they are (with the usual random crops
  and flips, `invprotect.training.ClassifierTrainingConfig`'s default augmentation);
* ``protected+jpeg50``: re-encodes every protected image with real JPEG quality 50 first;
* ``protected+comdefend``: purifies every protected image with ComDefend first (the
  paper's pirate; ``--comdefend``, trained by ``benchmarks/bench_defences.py``);
* ``recovered``: the legitimate recipient, who recovers the originals with the key
  (bit for bit: the script checks it on the whole set) and trains on them.

The training set is protected as tensors (``RAEG.protect``, rounded to 8 bits, the
pixels a PNG file would hold). Each model trains ``--epochs`` epochs with the same seed
and settings; ``--train-images`` takes a seeded subset to save time.

Example:
    .venv/bin/python benchmarks/paper_table3.py --epochs 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import REFERENCE_PROTECTOR, machine

from invprotect.data import ImageSet, default_cifar10_root, load_image_set, train_test_split
from invprotect.defences import create_defence_from_spec
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from invprotect.targets import Classifier, accuracy
from invprotect.training import ClassifierTrainingConfig, train_classifier

OUT = Path(__file__).resolve().parent / "out"
PAPER = {  # Table 3 of Chen et al. 2022, Mini-ImageNet (ResNet-50 / ResNet-101 / DenseNet-121)
    "protected+comdefend": "0.526 / 0.565 / 0.597",
    "recovered": "0.935 / 0.955 / 0.952",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="default: local CIFAR-10")
    parser.add_argument("--protector", type=Path, default=REFERENCE_PROTECTOR)
    parser.add_argument("--comdefend", type=Path, default=OUT / "comdefend-cifar10")
    parser.add_argument(
        "--archs", nargs="+", default=["resnet_small", "vgg_small", "densenet_small"]
    )
    parser.add_argument(
        "--pirates",
        nargs="+",
        default=["protected", "protected+jpeg50", "protected+comdefend", "recovered"],
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=OUT / "table3.json")
    return parser.parse_args(argv)


def _with_images(images: ImageSet, pixels: torch.Tensor) -> ImageSet:
    return ImageSet(pixels, images.labels, images.classes, images.paths)


@torch.no_grad()
def training_sets(
    train: ImageSet, protector: RAEG, pirates: list[str], comdefend: Path
) -> dict[str, ImageSet]:
    """Each pirate's training set, derived from the protected 8-bit training images."""
    protected = []
    for start in range(0, len(train), 500):
        x = train.batch(range(start, min(len(train), start + 500)))
        protected.append((protector.protect(x) * 255).round().to(torch.uint8))
    pixels = torch.cat(protected)
    sets = {}
    for pirate in pirates:
        if pirate == "protected":
            sets[pirate] = _with_images(train, pixels)
        elif pirate == "recovered":
            codec = ExactCodec(protector)
            restored = torch.cat(
                [
                    codec.restore(chunk, codec.residuals(original, chunk))
                    for chunk, original in zip(
                        pixels.split(500), train.images.split(500), strict=True
                    )
                ]
            )
            if not torch.equal(restored, train.images):
                raise RuntimeError("recovery of the training set is not exact")
            sets[pirate] = _with_images(train, restored)
        else:
            spec = {
                "protected+jpeg50": "jpeg:quality=50",
                "protected+comdefend": f"comdefend:weights={comdefend}",
            }[pirate]
            defence = create_defence_from_spec(spec).eval()
            cleaned = [
                (defence(chunk.float() / 255) * 255).round().to(torch.uint8)
                for chunk in pixels.split(500)
            ]
            sets[pirate] = _with_images(train, torch.cat(cleaned))
    return sets


def main(argv: list[str] | None = None) -> None:
    """Build the pirates' sets, train every family on each, print the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = args.data or default_cifar10_root()
    train_index, test_index = train_test_split(data)
    train = load_image_set(train_index, 32, OUT / "cache")
    test = load_image_set(test_index, 32, OUT / "cache")
    if args.train_images is not None:
        generator = torch.Generator().manual_seed(args.seed)
        train = train.subset(torch.randperm(len(train), generator=generator)[: args.train_images])
    protector = RAEG.load(args.protector)
    sets = training_sets(train, protector, args.pirates, args.comdefend)
    results: dict[str, dict[str, float]] = {}
    for pirate, images in sets.items():
        results[pirate] = {}
        for arch in args.archs:
            torch.manual_seed(args.seed)
            model = Classifier(arch, train.classes)
            config = ClassifierTrainingConfig(epochs=args.epochs, seed=args.seed)
            train_classifier(model, images, None, config)
            results[pirate][arch] = accuracy(model.eval(), test)
            print(f"{pirate} {arch}: clean test accuracy {results[pirate][arch]:.4f}", flush=True)
    lines = [
        f"| training set | {' / '.join(args.archs)} | paper, Mini-ImageNet "
        "(ResNet-50 / ResNet-101 / DenseNet-121) |",
        "|---|---|---|",
    ]
    for pirate, by_arch in results.items():
        cells = " / ".join(f"{by_arch[arch]:.3f}" for arch in args.archs)
        lines.append(f"| {pirate} | {cells} | {PAPER.get(pirate, '-')} |")
    table = "\n".join(lines)
    print(table)
    report = {
        "table": table,
        "results": results,
        "args": {k: str(v) for k, v in vars(args).items()},
        "train_images": len(train),
        "machine": machine(),
        "wall_seconds": time.perf_counter() - started,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}; wall {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
