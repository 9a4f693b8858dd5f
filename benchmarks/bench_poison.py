"""``protect --poison-steps``: cost, quality and what classifiers see, beside the network alone.

Protects the same CIFAR-10 test images with the reference key (`benchmarks/reference/cifar10-h200`)
through `Protector.encode` (the pixels and records files hold; each image with its class name, as
`invprotect protect` passes class folders), once without a poison and once per ``--steps``, in
alternating batches so that the machine's noise falls on every setting alike. Per setting: seconds
per image, record bytes per image, PSNR and SSIM, bit-exact recoveries, and the accuracy of the
key's targets (``resnet_small``, ``convnet_small``: the poison attacks them) and of an unseen
family (``vgg_small`` of `benchmarks/reference/proxy`) on the protected images, as they are and
after each defence (Table 1 of the paper). ``--poisons`` picks the kinds (`POISONS`): ``linf``
(8 levels per value, the default of ``protect``), ``l2`` (``--poison-psnr 32.25``) and
``l2-through`` (also ``--poison-through`` JPEG 10, grayscale and the recipes' ComDefend,
``comdefend-seen``; the table's ComDefend is the thief's ``comdefend-unseen``). With ``--grid
PNG``: the first 8 originals, then per setting the protected images and their differences from
the originals, amplified 10 times around gray.

Example::

    python benchmarks/bench_poison.py --images 500 --steps 20 40
    python benchmarks/bench_poison.py --images 500 --steps 20 --poisons linf l2 l2-through
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import labelled_chunks, load_subset, write_result
from pytorch_msssim import ssim

from invprotect.defences import create_defence_from_spec
from invprotect.metrics import psnr
from invprotect.models.poison import PoisonConfig
from invprotect.pictures import amplified_difference, image_grid
from invprotect.protectors import load_protector
from invprotect.targets import Classifier

HERE = Path(__file__).resolve().parent
KEY = HERE / "reference" / "cifar10-h200"
UNSEEN = HERE / "reference" / "proxy" / "vgg_small"
DEFENCES = [
    "none",
    "jpeg:quality=50",
    "jpeg:quality=10",
    "grayscale",
    "median_filter:kernel_size=3",
    f"comdefend:weights={HERE / 'reference' / 'proxy' / 'comdefend-unseen'}",
]

SEEN = HERE / "reference" / "proxy" / "comdefend-seen"
POISONS = {
    "linf": {},
    "l2": {"psnr": 32.25},
    "l2-through": {
        "psnr": 32.25,
        "through": ("jpeg:quality=10", "grayscale", f"comdefend:weights={SEEN}"),
    },
}
"""The poisons ``--poisons`` names: `PoisonConfig` settings besides the steps."""


def accuracies(images: torch.Tensor, labels: torch.Tensor) -> dict[str, dict[str, float]]:
    """Per defence, the accuracy of each classifier on ``uint8`` images."""
    models = {
        "resnet_small": Classifier.load(KEY / "resnet_small"),
        "convnet_small": Classifier.load(KEY / "convnet_small"),
        "vgg_small (unseen)": Classifier.load(UNSEEN),
    }
    table = {}
    for spec in DEFENCES:
        x = images.float() / 255
        if spec != "none":
            with torch.no_grad():
                x = create_defence_from_spec(spec)(x).mul(255).round().div(255)
        with torch.no_grad():
            table[spec.split(":weights")[0]] = {
                name: round(float((model(x).argmax(1) == labels).float().mean()), 4)
                for name, model in models.items()
            }
    return table


def main() -> None:
    """Protect, recover, measure, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 40])
    parser.add_argument("--poisons", nargs="+", default=["linf"], choices=list(POISONS))
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "bench_poison.json")
    parser.add_argument("--grid", type=Path, default=None, help="a PNG of the first 8 images")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    test = load_subset(args.data / "test", args.images, 0)
    targets = [KEY / "resnet_small", KEY / "convnet_small"]
    settings = {"network alone": load_protector(KEY / "protector")}
    for kind in args.poisons:
        for steps in args.steps:
            config = PoisonConfig(steps, **POISONS[kind])
            name = f"poison {steps} steps" if kind == "linf" else f"{kind} poison {steps} steps"
            settings[name] = load_protector(KEY / "protector", "cpu", targets, config)
    pixels: dict[str, list[torch.Tensor]] = {name: [] for name in settings}
    records: dict[str, list[bytes]] = {name: [] for name in settings}
    seconds = dict.fromkeys(settings, 0.0)
    for chunk, names in labelled_chunks(test, args.batch_size):
        for name, protector in settings.items():
            begun = time.perf_counter()
            out, blobs = protector.encode(chunk, names)
            seconds[name] += time.perf_counter() - begun
            pixels[name].append(out)
            records[name] += blobs
    rows = {}
    for name, protector in settings.items():
        protected = torch.cat(pixels[name])
        restored, _ = protector.decode(protected, records[name])
        x, y = test.images.float() / 255, protected.float() / 255
        rows[name] = {
            "seconds_per_image": round(seconds[name] / len(test), 4),
            "record_bytes_per_image": round(sum(map(len, records[name])) / len(test), 1),
            "psnr": round(float(psnr(y, x).mean()), 2),
            "ssim": round(float(ssim(y, x, data_range=1.0, win_size=7)), 4),
            "exact": int((restored == test.images).flatten(1).all(1).sum()),
            "accuracy": accuracies(protected, test.labels),
        }
    rows["originals"] = {"accuracy": accuracies(test.images, test.labels)}
    if args.grid is not None:
        first = test.images[:8].float() / 255
        pictures = [first]
        for name in settings:
            protected = torch.cat(pixels[name])[:8].float() / 255
            pictures += [protected, amplified_difference(protected, first)]
        image_grid(pictures).save(args.grid)
    for name, row in rows.items():
        print(name, json.dumps(row))
    write_result({"images": len(test), "rows": rows}, args, started)


if __name__ == "__main__":
    main()
