"""Images per second of training fed by `ProtectedImageFolder` and of training fed by originals.

The key holder trains on a protected set without recovering it to disk:
`invprotect.data.ProtectedImageFolder` recovers every batch in the DataLoader's workers.
This benchmark puts that loop beside the same loop fed by torchvision's ``ImageFolder`` on
the originals (the CIFAR-10 JPEG files), in one run, with the same DataLoader settings
(``--workers`` worker processes, shuffled, batch ``--batch-size``) and the same model
(``convnet_small``, SGD, ``--threads`` intra-op threads in the training process).

``--files`` CIFAR-10 training files (evenly over the classes) are linked into a source tree
and protected with each protector of ``--protectors`` (``reference``: the committed proxy
protector ``benchmarks/reference/proxy/protector-margin``, preset ``cpu-32``; ``small``: a
2-level RAEG with 8 hidden channels, moved off the identity by a few Adam steps; or a
checkpoint path). For each protector, the originals' loop and the protected loop run back
to back: ``--warmup`` steps, then ``--steps`` timed steps. Each row records images per
second, the fraction of the timed wall spent waiting for the next batch, and the load
average before and after (other processes on the machine change the figures).

Example:
    nice -n 5 .venv/bin/python benchmarks/bench_protected_loader.py --files 512 --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import OUT, machine
from PIL import Image
from torch import Tensor
from torch.nn.functional import cross_entropy, mse_loss
from torch.utils.data import DataLoader, Dataset

from invprotect.data import ProtectedImageFolder, default_cifar10_root
from invprotect.files.protect import protect_tree
from invprotect.models import RAEG
from invprotect.protectors import load_protector
from invprotect.targets import Classifier

REFERENCE = Path(__file__).resolve().parent / "reference" / "proxy" / "protector-margin"
SMALL = {"generator": {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=512, help="CIFAR-10 files to protect.")
    parser.add_argument("--protectors", nargs="+", default=["reference", "small"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes.")
    parser.add_argument("--threads", type=int, default=1, help="Threads of the training loop.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="Timed steps per row.")
    parser.add_argument("--json", type=Path, default=OUT / "protected_loader.json")
    return parser.parse_args(argv)


def to_tensor(image: Image.Image) -> Tensor:
    """An RGB PIL image as float ``(3, H, W)`` in ``[0, 1]``."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def _link_sources(count: int, root: Path) -> None:
    cifar10 = default_cifar10_root()
    if cifar10 is None:
        raise SystemExit("CIFAR-10 not found: set INVPROTECT_CIFAR10 to its ImageFolder")
    classes = sorted(p for p in (cifar10 / "train").iterdir() if p.is_dir())
    for folder in classes:
        (root / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[: count // len(classes)]:
            (root / folder.name / path.name).symlink_to(path)


def _protector(spec: str) -> tuple[str, RAEG]:
    if spec == "reference":
        return "reference (cpu-32)", load_protector(REFERENCE)
    if spec == "small":
        torch.manual_seed(0)
        raeg = RAEG.from_preset("cpu-32", **SMALL)
        optimiser = torch.optim.Adam(raeg.generator.parameters(), lr=1e-2)
        for _ in range(10):
            x = torch.rand(8, 3, 32, 32)
            loss = mse_loss(raeg.generate(x), 0.8 * x + 0.1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return "small (2 levels, 8 channels)", raeg.eval()
    return spec, load_protector(spec)


def _batches(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    while True:
        yield from loader


def _timed_training(dataset: Dataset, classes: list[str], args: argparse.Namespace) -> dict:
    """Train ``convnet_small`` on ``dataset``: images/s and the share of wall spent waiting."""
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    torch.manual_seed(0)
    model = Classifier("convnet_small", classes).to(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = _batches(loader)
    load_before = os.getloadavg()[0]
    waited, started = 0.0, 0.0
    for step in range(args.warmup + args.steps):
        asked = time.perf_counter()
        images, labels = next(batches)
        if step == args.warmup:
            started, waited = asked, 0.0
        waited += time.perf_counter() - asked
        loss = cross_entropy(model(images.contiguous(memory_format=torch.channels_last)), labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    seconds = time.perf_counter() - started
    return {
        "images_per_s": round(args.steps * args.batch_size / seconds, 1),
        "waiting_fraction": round(waited / seconds, 3),
        "seconds": round(seconds, 2),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    """Measure the originals' and the protected loop per protector; print a table, write JSON."""
    from torchvision.datasets import ImageFolder  # imported on use: slow to import

    args = _parse(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        sources = Path(folder) / "sources"
        _link_sources(args.files, sources)
        originals = ImageFolder(str(sources), transform=to_tensor)
        for spec in args.protectors:
            name, protector = _protector(spec)
            protected = Path(folder) / f"protected-{len(rows)}"
            began = time.perf_counter()
            report = protect_tree(sources, protected, protector)
            protect_seconds = time.perf_counter() - began
            assert report.ok, report.failed
            key = protector.save(Path(folder) / f"key-{len(rows)}")
            dataset = ProtectedImageFolder(protected, key, transform=to_tensor)
            assert dataset.classes == originals.classes
            base = _timed_training(originals, originals.classes, args)
            mine = _timed_training(dataset, dataset.classes, args)
            rows.append(
                {
                    "protector": name,
                    "files": len(dataset),
                    "protect_images_per_s": round(len(dataset) / protect_seconds, 1),
                    "originals": base,
                    "protected": mine,
                    "slowdown": round(base["images_per_s"] / mine["images_per_s"], 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{'protector':<30} {'originals img/s':>15} {'protected img/s':>15} {'slowdown':>8} "
        f"{'waiting (orig/prot)':>19} {'load':>9}"
    )
    for row in rows:
        base, mine = row["originals"], row["protected"]
        waiting = f"{base['waiting_fraction']:.2f}/{mine['waiting_fraction']:.2f}"
        load = f"{base['load_average_before']:.1f}-{mine['load_average_after']:.1f}"
        print(
            f"{row['protector']:<30} {base['images_per_s']:>15.1f} {mine['images_per_s']:>15.1f} "
            f"{row['slowdown']:>7.2f}x {waiting:>19} {load:>9}"
        )
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {"rows": rows, "settings": settings, "machine": machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
