"""One cell of the thief's matrix, fast: protect with the network, clean, train one pirate.

`benchmarks/thief.py` protects the training set through `Protector.encode` (the pixels and
records the files hold) and counts bit-exact recoveries; on a GPU that exact path is slow
(50,000 images did not finish in 280 s on an H200). This script takes the protected pixels
from the float network rounded to 8 bits (`recipe_scan.protect_images`), which may differ
from the files' pixels at rounding ties, cleans them with the thief's defence, trains a
pirate on them and scores it on the clean test images after every epoch. It is what the
2026-11-30 GPU rows of docs/results.md ran.

Example::

    python benchmarks/pirate_cell.py --protector P --defence jpeg:quality=10 \
        --arch resnet_small --out cell.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import machine
from recipe_scan import like, pirate, protect_images, purify

from invprotect.data import default_cache_dir, load_image_set, train_test_split
from invprotect.models import RAEG


def main() -> None:
    """Run the cell and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protector", type=Path, required=True)
    parser.add_argument("--defence", default="none", help="a defence spec, none or originals")
    parser.add_argument("--arch", default="resnet_small")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.time()
    train_index, test_index = train_test_split(args.data)
    train = load_image_set(train_index, None, default_cache_dir())
    test = load_image_set(test_index, None, default_cache_dir())
    if args.defence == "originals":
        images = train.images
    else:
        protected = protect_images(RAEG.load(args.protector, args.device), train.images)
        images = purify(args.defence, protected)
    accuracy = pirate(args.arch, like(train, images), test, args.epochs, args.seed, args.device)
    result = {
        "defence": args.defence,
        "arch": args.arch,
        "accuracy": accuracy,
        "protector": str(args.protector),
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
