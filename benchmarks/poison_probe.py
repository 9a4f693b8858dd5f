"""Try 8: does an ideal per-image poison at the protector's budget cripple a pirate?

A protector's network gives each image one deterministic perturbation, learned in a few
hundred steps. The strongest training poisons of the literature are optimised per image
instead: targeted adversarial examples with a fixed class permutation ("Adversarial examples
make strong poisons", Fowl et al., NeurIPS 2021). This probe crafts them, as a ceiling on
what any per-image perturbation at this budget can do to the thief: targeted PGD (L-inf
``--epsilon``, ``--steps`` signed steps) pushes every training image of class ``y`` toward
class ``(y + 1) mod K`` of the surrogate classifiers (their logits averaged), through random
flips and shifts (the pirate's augmentation). With ``--squeeze`` the loss is summed over
the image itself, Kornia's differentiable JPEG at quality 10 and grayscale: the thief's
squeezing inside the crafting. With ``--predicted`` the class pushed from is the surrogates'
prediction instead of the label, as ``invprotect protect --poison-steps`` does. The poisoned
set, rounded to 8 bits, is saved as a checkpoint for `pirate_cell.py --pixels DIR` (same
``--data``, ``--train-images`` and ``--seed``).

Example::

    python benchmarks/poison_probe.py --surrogates benchmarks/reference/cifar10-h200/resnet_small \
        --train-images 5000 --steps 20 --out benchmarks/out/poison
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import load_subset, machine
from pytorch_msssim import ssim
from torch import Tensor

from invprotect.attacks import create_attack
from invprotect.checkpoint import save_checkpoint
from invprotect.metrics import psnr
from invprotect.models.poison import PoisonConfig, targeted_steps
from invprotect.targets import Classifier, Ensemble


def craft(
    model: Ensemble,
    images: Tensor,
    targets: Tensor,
    config: PoisonConfig,
    squeezers: list[torch.nn.Module],
    generator: torch.Generator,
) -> Tensor:
    """`targeted_steps` from a random start: ``[0, 1]`` images on the 8-bit grid."""
    noise = (torch.rand(images.shape, generator=generator) * 2 - 1).to(images)
    start = (images + noise * config.epsilon / 255).clamp(0, 1)
    out = targeted_steps(model, images, start, targets, config, generator, squeezers)
    return out.mul(255).round().div(255)


def main() -> None:
    """Craft the poisoned training set, measure it, save it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--surrogates", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--train-images", type=int, default=None, help="default: all")
    parser.add_argument("--epsilon", type=int, default=8, help="in 8-bit levels")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--squeeze", action="store_true", help="JPEG 10 and grayscale inside")
    parser.add_argument(
        "--predicted", action="store_true", help="push from the surrogates' class, not the label"
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    train = load_subset(args.data / "train", args.train_images, args.seed)
    model = Ensemble([Classifier.load(path, args.device) for path in args.surrogates])
    model.requires_grad_(False)
    squeezers = []
    if args.squeeze:
        squeezers = [create_attack("jpeg_kornia", quality=10), create_attack("grayscale")]
        squeezers = [squeezer.to(args.device) for squeezer in squeezers]
    generator = torch.Generator().manual_seed(args.seed)
    config = PoisonConfig(steps=args.steps, epsilon=args.epsilon)
    poisoned, fooled, quality, similarity = [], 0, 0.0, 0.0
    for start in range(0, len(train), args.batch_size):
        chunk = slice(start, start + args.batch_size)
        images = train.images[chunk].to(args.device).float() / 255
        labels = train.labels[chunk].to(args.device)
        if args.predicted:  # as `protect --poison-steps` does: no labels needed
            with torch.no_grad():
                labels = model(images).argmax(1)
        targets = (labels + 1) % len(train.classes)
        out = craft(model, images, targets, config, squeezers, generator)
        with torch.no_grad():
            fooled += int((model(out).argmax(1) == targets).sum())
        quality += float(psnr(out, images).sum())
        similarity += float(ssim(out, images, data_range=1.0, win_size=7)) * len(images)
        poisoned.append(out.mul(255).round().to(torch.uint8).cpu())
        print(f"{start + len(images)}/{len(train)} crafted", flush=True)
    summary = {
        "surrogates": [str(path) for path in args.surrogates],
        "images": len(train),
        "epsilon_levels": args.epsilon,
        "steps": args.steps,
        "squeeze": args.squeeze,
        "predicted": args.predicted,
        "psnr": round(quality / len(train), 3),
        "ssim": round(similarity / len(train), 4),
        "surrogate_hits_target_class": round(fooled / len(train), 4),
        "train_images_arg": args.train_images,
        "seed": args.seed,
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
    }
    save_checkpoint(args.out, {"pixels": torch.cat(poisoned)}, summary)
    print(json.dumps({key: value for key, value in summary.items() if key != "machine"}))


if __name__ == "__main__":
    main()
