r"""Does a class-keyed, low-frequency pattern poison a pirate? (a probe for the thief's test).

Published availability poisons that survive JPEG-10 and grayscale squeezing are low-frequency
and class-wise: a network trained on them learns the pattern instead of the objects. RAEG's
generator sees no label; this probe asks, before any such design is built into a protector,
whether a class-keyed pattern at the protector's distortion budget would cripple the pirate
at all. Each class ``y`` gets a fixed, seeded pattern: Gaussian noise of ``--grid`` x
``--grid`` cells (luminance only with ``--luminance``), enlarged bicubically to the image
size and scaled to the wanted PSNR; it is added to every training image of class ``y``
(8-bit rounded), optionally on top of a trained protector's output (``--protector``).
A pirate trains on the result, as it is and after each defence, and is tested on clean test
images, beside the originals' row of `recipe_scan.py` (same subset, seed and pirate).

Example::

    python benchmarks/shortcut_probe.py --psnr 32 --grid 4 --luminance \
        --prep PREP --out benchmarks/out/recipes
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import machine
from recipe_scan import like, pirate, protect_images, purify
from torch.nn import functional

from invprotect.data import default_cache_dir, load_image_set, train_test_split
from invprotect.metrics import psnr
from invprotect.models import RAEG


def class_patterns(classes: int, size: int, grid: int, luminance: bool, seed: int) -> torch.Tensor:
    """``(classes, 3, size, size)`` zero-mean low-frequency patterns of unit RMS."""
    generator = torch.Generator().manual_seed(seed)
    channels = 1 if luminance else 3
    cells = torch.randn(classes, channels, grid, grid, generator=generator)
    patterns = functional.interpolate(cells, size=(size, size), mode="bicubic", align_corners=False)
    patterns = patterns.expand(classes, 3, size, size)
    patterns = patterns - patterns.mean(dim=(1, 2, 3), keepdim=True)
    return patterns / patterns.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()


def class_textures(
    labels: torch.Tensor, classes: int, size: int, luminance: bool, cycles: float, seed: int
) -> torch.Tensor:
    """``(n, 3, size, size)`` unit-RMS textures: a fresh sample per image, its class's spectrum.

    Each class gets a seeded amplitude spectrum, three Gaussian blobs within ``cycles`` cycles
    per image, mirrored left-right so that a flip keeps the class's signature; each image gets
    white noise shaped by its class's spectrum. Averaging many images of one class does not
    reveal the texture (every sample differs), and a random crop only moves its phase.
    """
    generator = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(size)[:, None] * size
    fx = torch.fft.rfftfreq(size)[None, :] * size
    masks = []
    for _ in range(classes):
        mask = torch.zeros(size, size // 2 + 1)
        for _ in range(3):
            radius = cycles * torch.rand(1, generator=generator).sqrt()
            angle = torch.pi * torch.rand(1, generator=generator)
            cy, cx = radius * angle.cos(), radius * angle.sin()
            for sy in (cy, -cy):  # a left-right flip mirrors the spectrum
                mask += torch.exp(-((fy - sy) ** 2 + (fx - cx) ** 2) / 2)
        masks.append(mask)
    masks = torch.stack(masks)
    channels = 1 if luminance else 3
    noise = torch.randn(len(labels), channels, size, size, generator=generator)
    shaped = torch.fft.irfft2(torch.fft.rfft2(noise) * masks[labels][:, None], s=(size, size))
    shaped = shaped.expand(len(labels), 3, size, size)
    shaped = shaped - shaped.mean(dim=(1, 2, 3), keepdim=True)
    return shaped / shaped.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()


def add_patterns(
    images: torch.Tensor, labels: torch.Tensor | None, patterns: torch.Tensor, wanted_psnr: float
) -> torch.Tensor:
    """``uint8`` images plus their class's pattern at an RMS of ``10 ** (-psnr / 20)``.

    ``patterns`` holds one pattern per class, or (``labels=None``) one per image.
    """
    rms = 10 ** (-wanted_psnr / 20)
    shifted = images.float() / 255 + rms * (patterns if labels is None else patterns[labels])
    return (shifted.clamp(0, 1) * 255).round().to(torch.uint8)


def main() -> None:
    """Run the probe."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prep", type=Path, required=True, help="holds comdefend-unseen")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--psnr", type=float, default=32.0, help="PSNR of the pattern alone")
    parser.add_argument("--grid", type=int, default=4, help="pattern cells per side")
    parser.add_argument("--luminance", action="store_true", help="same pattern in R, G, B")
    parser.add_argument(
        "--texture",
        type=float,
        default=None,
        help="instead of a fixed pattern: class-keyed textures within this many cycles per image",
    )
    parser.add_argument("--protector", type=Path, default=None, help="add to its output")
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--test-images", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pirate-arch", default="resnet_small")
    parser.add_argument(
        "--pirate-defences", nargs="+", default=["none", "jpeg:quality=10", "comdefend"]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/recipes"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    train_index, test_index = train_test_split(args.data)
    train = load_image_set(train_index, None, default_cache_dir())
    test = load_image_set(test_index, None, default_cache_dir())
    generator = torch.Generator().manual_seed(0)  # the subsets of recipe_scan.py
    train_sub = train.subset(torch.randperm(len(train), generator=generator)[: args.train_images])
    test_sub = test.subset(torch.randperm(len(test), generator=generator)[: args.test_images])
    base = train_sub.images
    if args.protector is not None:
        base = protect_images(RAEG.load(args.protector).eval(), base)
    if args.texture is None:
        patterns = class_patterns(
            len(train.classes), base.shape[-1], args.grid, args.luminance, args.seed
        )
        poisoned = add_patterns(base, train_sub.labels, patterns, args.psnr)
    else:
        textures = class_textures(
            train_sub.labels,
            len(train.classes),
            base.shape[-1],
            args.luminance,
            args.texture,
            args.seed,
        )
        poisoned = add_patterns(base, None, textures, args.psnr)
    x = train_sub.images.float() / 255
    total_psnr = psnr(poisoned.float() / 255, x).mean().item()
    thief_comdefend = f"comdefend:weights={args.prep / 'comdefend-unseen'}"
    curves = {}
    for spec in args.pirate_defences:
        spec = thief_comdefend if spec == "comdefend" else spec
        cleaned = like(train_sub, purify(spec, poisoned))
        curves[spec] = pirate(args.pirate_arch, cleaned, test_sub, args.epochs, seed=1)
        print(spec, curves[spec], flush=True)
    kind = f"g{args.grid}" if args.texture is None else f"texture{args.texture:g}"
    name = f"shortcut-{'lum' if args.luminance else 'rgb'}-{kind}-{args.psnr:g}dB" + (
        "-on-protector" if args.protector else ""
    )
    result = {
        "probe": name,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "psnr_of_training_images": total_psnr,
        "pirate": curves,
        "wall_s": time.time() - started,
        "machine": machine(),
    }
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(name, json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
