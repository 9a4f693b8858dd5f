"""Train a classifier on a protected data set without ever writing an original to disk.

The key holder's side of invprotect: the data set lives on disk only in protected form, and
training reads it through `invprotect.data.ProtectedImageFolder`, which recovers each batch
of originals in memory (one call of the network per batch, in DataLoader workers).

1. A few hundred CIFAR-10 training images (``--files``, the same number from each class) are
   linked, not copied, into a source tree, and protected into ``OUT/protected`` with a small
   RAEG. A fresh RAEG is the identity (every coupling starts at zero), so it is first trained
   for a few Adam steps towards ``0.8 x + 0.1``: its protected images then differ from the
   originals (the script prints their PSNR), as a real key's do.
2. The key is saved to ``OUT/key``, and a ``convnet_small`` classifier trains for ``--steps``
   SGD steps on ``ProtectedImageFolder(OUT/protected, OUT/key)`` through a plain DataLoader
   with two workers (each loads the key from its path).
3. Checks (exit status 1 when one fails): the images the loader gave are the originals bit
   for bit (compared in memory with the CIFAR-10 files), and training wrote no file under
   ``OUT``.

Usage::

    python examples/train_on_protected.py --files 300 --steps 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn.functional import cross_entropy, mse_loss
from torch.utils.data import DataLoader

from invprotect.data import ProtectedImageFolder, default_cifar10_root
from invprotect.files.images import read_rgb
from invprotect.files.protect import protect_tree
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.targets import Classifier

SMALL = {"generator": {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}}


def to_tensor(image: Image.Image) -> Tensor:
    """An RGB PIL image as float ``(3, H, W)`` in ``[0, 1]`` (what the classifiers take)."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def link_sources(cifar10: Path, count: int, root: Path) -> dict[str, Path]:
    """Link ``count`` training files (evenly over the classes) into ``root/<class>/``.

    Returns:
        The original file of each protected PNG, by its path relative to the protected root.
    """
    classes = sorted(p for p in (cifar10 / "train").iterdir() if p.is_dir())
    sources = {}
    for folder in classes:
        (root / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.jpg"))[: max(1, count // len(classes))]:
            (root / folder.name / path.name).symlink_to(path)
            sources[f"{folder.name}/{path.stem}.png"] = path
    return sources


def small_protector(steps: int = 10) -> RAEG:
    """A small RAEG moved away from the identity by a few Adam steps (not a trained key)."""
    torch.manual_seed(0)
    raeg = RAEG.from_preset("cpu-32", **SMALL)
    optimiser = torch.optim.Adam(raeg.generator.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.rand(8, 3, 32, 32)
        loss = mse_loss(raeg.generate(x), 0.8 * x + 0.1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return raeg.eval()


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300, help="CIFAR-10 files to protect.")
    parser.add_argument("--steps", type=int, default=10, help="SGD steps of the classifier.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes.")
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: temp).")
    args = parser.parse_args(argv)
    cifar10 = default_cifar10_root()
    if cifar10 is None:
        print("CIFAR-10 not found: set INVPROTECT_CIFAR10 to its ImageFolder", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    started = time.perf_counter()
    out = args.out or Path(tempfile.mkdtemp(prefix="train-on-protected-"))

    raeg = small_protector()
    sources = link_sources(cifar10, args.files, out / "sources")
    report = protect_tree(out / "sources", out / "protected", raeg, batch_size=args.batch_size)
    if not report.ok:
        print(f"protection failed: {report.failed}", file=sys.stderr)
        return 1
    key = raeg.save(out / "key")
    first = next(iter(sources))
    shown = read_rgb(out / "protected" / first)[None].float() / 255
    original = read_rgb(sources[first])[None].float() / 255
    quality = psnr(shown, original).item()
    print(
        f"protected {report.written} files into {out / 'protected'} in "
        f"{time.perf_counter() - started:.1f} s (PSNR of {first} against its original: "
        f"{quality:.1f} dB)"
    )

    dataset = ProtectedImageFolder(out / "protected", key, transform=to_tensor)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    torch.manual_seed(0)
    model = Classifier("convnet_small", dataset.classes)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = files_under(out)
    step = 0
    while step < args.steps:
        for images, labels in loader:
            loss = cross_entropy(model(images), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            print(f"step {step:3d}: {len(images)} recovered images, loss {loss.item():.3f}")
            if step == args.steps:
                break
    # What the loader gives is the originals: recover every file again, compare in memory.
    wrong = 0
    for start in range(0, len(dataset), args.batch_size):
        indices = range(start, min(start + args.batch_size, len(dataset)))
        for index, (image, _) in zip(indices, dataset.__getitems__(indices), strict=True):
            relative = Path(dataset.samples[index][0]).relative_to(out / "protected").as_posix()
            wrong += int(not torch.equal(image, read_rgb(sources[relative]).float() / 255))
    written = files_under(out) - before
    print(
        f"{len(dataset) - wrong} of {len(dataset)} recovered images are the originals bit for "
        f"bit; files written while training: {len(written)}; {time.perf_counter() - started:.1f} s"
    )
    return 0 if wrong == 0 and not written else 1


if __name__ == "__main__":
    sys.exit(main())
