"""What exact recovery costs: the prediction's time beside the network's, and the record's size.

For each size (32 px CIFAR-10 test images, 64 px Tiny ImageNet test images, and those
upsampled to 256 px), one thread, side by side in one run:

- ``network``: the float32 protection pass alone (`RAEG.protect`, tensor in, tensor out);
- ``old exact``: the float64 prediction of record coding 0 (the recovery of the clipped
  8-bit protected images, as the previous release computed it);
- ``new exact``: the fixed-point twin's inverse (record coding 1), and its forward pass,
  which protects files now;
- the record's residual in bits per pixel, coding 0 beside coding 1, with both checked
  to restore the originals bit for bit.

    nice -n 5 .venv/bin/python benchmarks/bench_exact.py \
        --protector benchmarks/reference/proxy/protector-margin

prints a table and writes ``benchmarks/out/exact.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import OUT, machine
from PIL import Image

from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from invprotect.models.fixed_point import FixedPointUNet
from invprotect.models.protector import Protector

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = {  # name: (folder, side to resize to or None, images, batch)
    "CIFAR-10 32 px": (SHARED / "cifar10", None, 256, 64),
    "Tiny ImageNet 64 px": (SHARED / "tinyimagenet100", None, 128, 32),
    "Tiny ImageNet 256 px (upsampled)": (SHARED / "tinyimagenet100", 256, 8, 2),
}


def _images(folder: Path, side: int | None, count: int) -> torch.Tensor:
    """``count`` test images spread over all classes (every k-th file), RGB ``uint8``."""
    files = sorted(folder.glob("test/*/*.jpg"))
    files = files[:: max(1, len(files) // count)][:count]
    pictures = [Image.open(file).convert("RGB") for file in files]
    if side is not None:
        pictures = [picture.resize((side, side), Image.BICUBIC) for picture in pictures]
    return torch.from_numpy(np.stack([np.asarray(p) for p in pictures])).permute(0, 3, 1, 2)


def _timed(function: Callable[[torch.Tensor], Any], batches: list[torch.Tensor]) -> float:
    """Seconds per image of ``function`` over the batches (after one warm-up batch)."""
    function(batches[0][:1])
    start = time.perf_counter()
    for batch in batches:
        function(batch)
    return (time.perf_counter() - start) / sum(len(batch) for batch in batches)


@torch.no_grad()
def measure(raeg: RAEG, images: torch.Tensor, batch: int) -> dict[str, Any]:
    """Times per image and record sizes of one set of images."""
    codec = ExactCodec(raeg)
    twin = codec.twin
    assert isinstance(twin, FixedPointUNet)
    originals = list(images.split(batch))
    floats = [x.float() / 255 for x in originals]
    old_protected = [Protector.encode(raeg, x)[0] for x in originals]
    legacy = codec._legacy_model()
    row: dict[str, Any] = {
        "images": len(images),
        "side": images.shape[-1],
        "network_s": _timed(raeg.protect, floats),
        "old_exact_s": _timed(lambda p: legacy.recover(p.double() / 255), old_protected),
        "new_exact_s": _timed(lambda p: twin.inverse(p.float() / 255), old_protected),
        "new_protect_s": _timed(twin.forward, floats),
    }
    old_bytes = new_bytes = 0
    for x, protected in zip(originals, old_protected, strict=True):
        difference = x.to(torch.int16) - codec._predict_legacy(protected)
        old = [zlib.compress(d.numpy().astype("<i2").tobytes(), 9) for d in difference]
        assert torch.equal(codec.restore(protected, old), x)
        new_protected, new = codec.encode(x)
        assert torch.equal(codec.restore(new_protected, new), x)
        old_bytes += sum(map(len, old))
        new_bytes += sum(map(len, new))
    pixels = images.shape[0] * images.shape[2] * images.shape[3]
    row["old_bits_per_pixel"] = 8 * old_bytes / pixels
    row["new_bits_per_pixel"] = 8 * new_bytes / pixels
    row["old_ratio"] = row["old_exact_s"] / row["network_s"]
    row["new_ratio"] = row["new_exact_s"] / row["network_s"]
    return row


def main() -> None:
    """Parse the arguments, measure every set, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protector", type=Path, action="append", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the image counts")
    parser.add_argument("--out", type=Path, default=OUT / "exact.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "rows": []}
    header = (
        "| protector | images | network (s/img) | old exact (s/img) | new exact (s/img) "
        "| old / network | new / network | new protect (s/img) | old bpp | new bpp |"
    )
    print(header)
    print("|" + " --- |" * 10)
    for path in args.protector:
        raeg = RAEG.load(path).eval()
        for name, (folder, side, count, batch) in SETS.items():
            images = _images(folder, side, max(batch, int(count * args.scale)))
            row = {"protector": str(path), "set": name, **measure(raeg, images, batch)}
            results["rows"].append(row)
            print(
                f"| {path.name} | {name} ({row['images']}) | {row['network_s']:.4f} "
                f"| {row['old_exact_s']:.4f} | {row['new_exact_s']:.4f} "
                f"| {row['old_ratio']:.2f}x | {row['new_ratio']:.2f}x "
                f"| {row['new_protect_s']:.4f} | {row['old_bits_per_pixel']:.2f} "
                f"| {row['new_bits_per_pixel']:.2f} |",
                flush=True,
            )
    results["wall_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wall {results['wall_s']:.0f} s; {args.out}")


if __name__ == "__main__":
    main()
