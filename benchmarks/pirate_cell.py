"""One cell of the thief's matrix, fast: protect with the network, clean, train one pirate.

`benchmarks/thief.py` protects the training set through `Protector.encode` (the pixels and
records the files hold) and counts bit-exact recoveries; on a GPU that exact path is slow
(50,000 images did not finish in 280 s on an H200). This script takes the protected pixels
from the float network rounded to 8 bits (`recipe_scan.protect_images`), which may differ
from the files' pixels at rounding ties, and hands them to `train_pirate`: cleaned with the
thief's defence (a registered spec, ``none`` or ``learned-inverse``, the latter trained on
``--leaked-count`` pairs of the same run), then a pirate trained on them (adversarially with
``--pgd-steps``) and scored on the clean test images after every epoch. ``--images
originals`` trains on the originals instead, the reference of each row; ``--poison-steps``
refines the protected images with `invprotect.models.poison.TargetedPoison` against
``--targets``, each pushed from its label (from the class the targets see with
``--no-labels``); ``--save-pixels DIR`` keeps the training images (before the defence) for
other cells; ``--pixels DIR`` trains on the set that `poison_probe.py` or ``--save-pixels``
saved there. It is what the GPU rows of docs/results.md ran.

Example::

    python benchmarks/pirate_cell.py --protector P --defence jpeg:quality=10 \
        --arch resnet_small --out cell.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import load_subset, machine
from recipe_scan import like, protect_images
from torch import Tensor

from invprotect.checkpoint import load_checkpoint, save_checkpoint
from invprotect.models import RAEG
from invprotect.models.poison import PoisonConfig
from invprotect.protectors import load_protector
from invprotect.training.adversarial import PGDConfig
from invprotect.training.pirate import LEARNED_INVERSE, PirateProgress, train_pirate


def _show(event: PirateProgress) -> None:
    """Print each epoch's accuracy (and the learned inverse's last step) as it comes."""
    if "test accuracy" in event.status or event.done == event.total:
        print(f"{event.stage} {event.done}/{event.total} {event.status}", flush=True)


def protect(args: argparse.Namespace, originals: Tensor, labels: list[str | None]) -> Tensor:
    """The float network's 8-bit images, refined by the key's poison with ``--poison-steps``.

    The poison pushes each image from its class in ``labels``, as `invprotect protect`
    does from each file's class folder (``None``: the class the targets see, as before
    ``protect`` took class folders, with ``--no-labels``).
    """
    poison = None
    if args.poison_steps:
        through = tuple(args.poison_through)
        config = (args.poison_steps, args.poison_epsilon)
        poison = PoisonConfig(*config, psnr=args.poison_psnr, through=through)
    raeg = load_protector(args.protector, args.device, args.targets, poison)
    assert isinstance(raeg, RAEG), "pirate_cell.py protects with a RAEG key"
    protected = protect_images(raeg, originals)
    if raeg.poison is None:
        return protected
    chunks = [slice(i, i + 1000) for i in range(0, len(labels), 1000)]
    refine = raeg.poison.refine
    return torch.cat(
        [refine(originals[c], protected[c].float(), labels[c]).to(torch.uint8) for c in chunks]
    )


def vars_of(args: argparse.Namespace) -> dict[str, str]:
    """The options, JSON-serialisable."""
    return {key: str(value) for key, value in vars(args).items()}


def main() -> None:
    """Run the cell and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protector", type=Path, required=True)
    parser.add_argument("--defence", default="none", help="a defence spec, none or learned-inverse")
    parser.add_argument("--images", choices=["protected", "originals"], default="protected")
    parser.add_argument("--pixels", type=Path, default=None, help="a poison_probe.py set")
    parser.add_argument("--poison-steps", type=int, default=0, help="a targeted poison on top")
    parser.add_argument("--poison-epsilon", type=int, default=None, help="8, or 24 with psnr")
    parser.add_argument("--poison-psnr", type=float, default=None, help="its L2 budget (dB)")
    parser.add_argument(
        "--poison-through", action="append", default=[], help="a defence spec it sees through"
    )
    parser.add_argument("--targets", type=Path, nargs="*", default=[], help="what it attacks")
    parser.add_argument(
        "--no-labels", action="store_true", help="the poison pushes from the targets' class"
    )
    parser.add_argument("--save-pixels", type=Path, default=None, help="keep them for --pixels")
    parser.add_argument("--pgd-steps", type=int, default=0, help="PGD adversarial training: steps")
    parser.add_argument("--leaked-count", type=int, default=500)
    parser.add_argument("--arch", default="resnet_small")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--train-images", type=int, default=None, help="default: all")
    parser.add_argument("--test-images", type=int, default=None, help="default: all")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    train = load_subset(args.data / "train", args.train_images, args.seed)
    test = load_subset(args.data / "test", args.test_images, args.seed)
    images = train
    if args.pixels is not None:
        tensors, config = load_checkpoint(args.pixels)
        if (config["train_images_arg"], config["seed"]) != (args.train_images, args.seed):
            raise SystemExit(f"{args.pixels} holds another subset: give its --train-images, --seed")
        images = like(train, tensors["pixels"])
    elif args.images == "protected":
        names = [None if args.no_labels else train.classes[i] for i in train.labels]
        protected = protect(args, train.images, names)
        images = like(train, protected)
    if args.save_pixels is not None:
        settings = {"train_images_arg": args.train_images, "seed": args.seed}
        save_checkpoint(args.save_pixels, {"pixels": images.images}, vars_of(args) | settings)
    report = train_pirate(
        images,
        test,
        args.defence,
        args.arch,
        args.epochs,
        adversarial=PGDConfig(steps=args.pgd_steps) if args.pgd_steps else None,
        leaked_originals=train if args.defence.startswith(LEARNED_INVERSE) else None,
        leaked_count=args.leaked_count,
        seed=args.seed,
        device=args.device,
        progress=_show,
    )
    result = {
        "defence": args.defence,
        "images": args.images,
        "pixels": None if args.pixels is None else str(args.pixels),
        "pgd_steps": args.pgd_steps,
        "poison_steps": args.poison_steps,
        "poison_labels": not args.no_labels,
        "poison_psnr": args.poison_psnr,
        "poison_through": args.poison_through,
        "targets": [str(path) for path in args.targets],
        "arch": args.arch,
        "accuracy": [round(value, 4) for value in report.accuracy],
        "report": report.to_dict(),
        "protector": str(args.protector),
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({key: result[key] for key in ("defence", "arch", "accuracy", "wall_s")}))


if __name__ == "__main__":
    main()
