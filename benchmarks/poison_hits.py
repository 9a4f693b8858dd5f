"""Why the key's poison is weaker than try 8's, on a CPU: how class-consistent each poison is.

A targeted poison works on a pirate when the images of each class carry features of one
other class: every image labelled ``y`` should look like class ``y + 1`` to classifiers,
including ones it was not crafted against. That is measured here without training a pirate:
on ``--images`` seeded CIFAR-10 *training* images, each variant crafts its poison and reports
PSNR and the fraction of images that the surrogates and an unseen family (``vgg_small`` of
`benchmarks/reference/proxy`) classify as ``label + 1``. The variants move one factor of try 8
(random start, ``resnet_small`` alone, labels, 40 steps) toward the key's own path
(`invprotect protect --poison-steps`: the network's pixels as the start, the targets'
ensemble, 20 steps), which is run last through `Protector.encode`, without labels (the class
the targets see is pushed from, as for files outside class folders) and with them (each
image's class folder, as `protect` passes it).

Example::

    python benchmarks/poison_hits.py --images 400 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import load_subset, write_result
from poison_probe import craft as probe_craft
from torch import Tensor

from invprotect.data import ImageSet
from invprotect.metrics import psnr
from invprotect.models.poison import PoisonConfig, targeted_steps
from invprotect.protectors import load_protector
from invprotect.targets import Classifier, Ensemble

HERE = Path(__file__).resolve().parent
KEY = HERE / "reference" / "cifar10-h200"
UNSEEN = HERE / "reference" / "proxy" / "vgg_small"
VARIANTS = {
    # name: (surrogates, steps, start, push from)
    "try 8 (random start, resnet, labels, 40)": (["resnet_small"], 40, "random", "label"),
    "20 steps": (["resnet_small"], 20, "random", "label"),
    "ensemble": (["resnet_small", "convnet_small"], 40, "random", "label"),
    "predicted class": (["resnet_small"], 40, "random", "predicted"),
    "network start": (["resnet_small"], 40, "network", "label"),
    "original start": (["resnet_small"], 40, "original", "label"),
}
KEY_PATHS = [  # (targets, steps, labelled): `protect` without and with class folders
    (["resnet_small", "convnet_small"], 20, False),
    (["resnet_small", "convnet_small"], 20, True),
    (["resnet_small"], 40, True),
]


def craft(
    surrogates: Ensemble, originals: Tensor, network: Tensor, labels: Tensor, spec: tuple, seed: int
) -> Tensor:
    """One variant's poisoned ``uint8`` images."""
    _, steps, start_kind, push_from = spec
    config = PoisonConfig(steps=steps)
    generator = torch.Generator().manual_seed(seed)
    x = originals.float() / 255
    if push_from == "predicted":
        with torch.no_grad():
            labels = surrogates(x).argmax(1)
    targets = (labels + 1) % 10
    if start_kind == "random":  # try 8's crafting
        out = probe_craft(surrogates, x, targets, config, [], generator)
    else:
        start = network.float() / 255 if start_kind == "network" else x
        out = targeted_steps(surrogates, x, start, targets, config, generator)
    return out.mul(255).round().to(torch.uint8)


def hits(images: Tensor, labels: Tensor, models: dict[str, Classifier]) -> dict[str, float]:
    """Per model, the fraction of ``uint8`` images classified as ``label + 1``."""
    x = images.float() / 255
    with torch.no_grad():
        return {
            name: round(float((model(x).argmax(1) == (labels + 1) % 10).float().mean()), 4)
            for name, model in models.items()
        }


def measured(out: Tensor, train: ImageSet, models: dict[str, Classifier], seconds: float) -> dict:
    """A variant's row: seconds, hits per model, PSNR against the originals."""
    quality = psnr(out.float() / 255, train.images.float() / 255).mean()
    return {
        "seconds": round(seconds, 1),
        "hits": hits(out, train.labels, models),
        "psnr": round(float(quality), 2),
    }


def main() -> None:
    """Craft every variant on the same images; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/cifar10"))
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "poison_hits.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.time()
    train = load_subset(args.data / "train", args.images, args.seed)
    models = {
        "resnet_small": Classifier.load(KEY / "resnet_small"),
        "convnet_small": Classifier.load(KEY / "convnet_small"),
        "vgg_small (unseen)": Classifier.load(UNSEEN),
    }
    for model in models.values():
        model.requires_grad_(False)
    network = load_protector(KEY / "protector")
    rows: dict[str, dict] = {"originals": {"hits": hits(train.images, train.labels, models)}}
    chunks = list(
        zip(train.images.split(args.batch_size), train.labels.split(args.batch_size), strict=True)
    )
    protected = torch.cat([network.encode(images)[0] for images, _ in chunks])
    rows["network alone"] = {"hits": hits(protected, train.labels, models)}
    for name, spec in VARIANTS.items():
        surrogates = Ensemble([models[key] for key in spec[0]])
        begun = time.perf_counter()
        out = torch.cat(
            [
                craft(
                    surrogates, images, protected[i * args.batch_size :][: len(images)], y, spec, i
                )
                for i, (images, y) in enumerate(chunks)
            ]
        )
        rows[name] = measured(out, train, models, time.perf_counter() - begun)
        print(name, json.dumps(rows[name]), flush=True)
    names = [train.classes[i] for i in train.labels]
    for members, steps, labelled in KEY_PATHS:
        config = PoisonConfig(steps)
        key = load_protector(KEY / "protector", "cpu", [KEY / m for m in members], config)
        begun = time.perf_counter()
        out = torch.cat(
            [
                key.encode(
                    images, names[i * args.batch_size :][: len(images)] if labelled else None
                )[0]
                for i, (images, _) in enumerate(chunks)
            ]
        )
        name = f"the key's path ({'+'.join(members)}, {steps} steps, " + (
            "folder labels)" if labelled else "no labels)"
        )
        rows[name] = measured(out, train, models, time.perf_counter() - begun)
        print(name, json.dumps(rows[name]), flush=True)
    write_result({"images": len(train), "rows": rows}, args, started)


if __name__ == "__main__":
    main()
