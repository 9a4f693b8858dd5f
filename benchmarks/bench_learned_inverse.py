"""Does the targeted poison resist a thief's learned inverse? Held-out PSNR, with and without it.

The thief of BridgePure holds ``--leaked`` (original, protected) pairs and trains a small U-Net
to undo the protection (`invprotect.training.pirate.learn_inverse`). Against the network
alone, 500 pairs took held-out images from 30.1 to 38.2 dB (docs/results.md). This script
protects the same CIFAR-10 training images with the reference key, without and with
``--poison-steps`` (through `Protector.encode`, as files hold them), trains the thief's U-Net
on each, and prints the PSNR of the held-out protected images against their originals before
and after his cleaning.

Example::

    python benchmarks/bench_learned_inverse.py --images 1500 --poison-steps 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import labelled_chunks, load_subset, write_result

from invprotect.data import ImageSet
from invprotect.models.poison import PoisonConfig
from invprotect.protectors import load_protector
from invprotect.training.pirate import learn_inverse

KEY = Path(__file__).resolve().parent / "reference" / "cifar10-h200"


def main() -> None:
    """Protect both ways, train the thief's inverse on each, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--images", type=int, default=1500, help="leaked plus held-out")
    parser.add_argument("--leaked", type=int, default=500)
    parser.add_argument("--poison-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=KEY.parents[1] / "out" / "learned_inverse.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    originals = load_subset(args.data / "train", args.images, 0)
    targets = [KEY / "resnet_small", KEY / "convnet_small"]
    settings = {
        "network alone": load_protector(KEY / "protector"),
        f"poison, {args.poison_steps} steps": load_protector(
            KEY / "protector", "cpu", targets, PoisonConfig(steps=args.poison_steps)
        ),
    }
    rows = {}
    for name, protector in settings.items():
        begun = time.time()
        chunks = labelled_chunks(originals, 100)
        pixels = torch.cat([protector.encode(chunk, names)[0] for chunk, names in chunks])
        protected = ImageSet(pixels, originals.labels, originals.classes, originals.paths)
        inverse = learn_inverse(protected, originals, args.leaked, seed=0)
        rows[name] = inverse.metrics | {"seconds": round(time.time() - begun, 1)}
        print(name, rows[name], flush=True)
    write_result({"rows": rows}, args, started)


if __name__ == "__main__":
    main()
