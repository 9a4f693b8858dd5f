"""One protector, many sizes: a protector trained at 64 px applied to photos of 256 px.

Takes ``--count`` seeded test images of Tiny ImageNet (64x64), and the same images upsampled to
``--size`` (bicubic, as a photo larger than the training crops), protects both with the 64 px
protector, and reports quality (PSNR, SSIM against the input of that size) and effect (the
targets' accuracy on originals and on protected images: at 64 px as trained; at the large size
both as the classifier sees it (fully convolutional, global pooling) and after an area resize
back to 64 px, as a thief who shrinks the photos would). On ``--exact`` of the large images it
checks that `Protector.encode` / `decode` recover them bit for bit.

Example::

    python benchmarks/bench_upscaled.py --count 200 --size 256
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from common import OUT, machine
from pytorch_msssim import ssim

from invprotect.data import ImageSet, default_cache_dir, load_image_set, train_test_split
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.targets import Classifier
from invprotect.targets.accuracy import accuracy

REFERENCE = Path(__file__).resolve().parent / "reference" / "tinyimagenet100-h200"


@torch.no_grad()
def protect(raeg: RAEG, images: torch.Tensor, batch: int) -> torch.Tensor:
    """The protected 8-bit images of ``uint8`` originals, as float in [0, 1]."""
    out = [
        (raeg.protect(chunk.float() / 255) * 255).round().clamp(0, 255) / 255
        for chunk in images.split(batch)
    ]
    return torch.cat(out)


def scores(models: list[Classifier], images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Each model's accuracy on float images in [0, 1]."""
    pixels = (images * 255).round().to(torch.uint8)
    dataset = ImageSet(pixels, labels, models[0].classes, [""] * len(labels))
    return [round(accuracy(model, dataset, batch_size=50), 4) for model in models]


def main() -> None:
    """Measure and print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protector", type=Path, default=REFERENCE / "protector")
    parser.add_argument("--targets", type=Path, nargs="+", default=None)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/tinyimagenet100"))
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--exact", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT / "upscaled.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    raeg = RAEG.load(args.protector).eval()
    targets = args.targets or [REFERENCE / "resnet_small", REFERENCE / "convnet_small"]
    models = [Classifier.load(path).eval() for path in targets]
    _, test_index = train_test_split(args.data)
    test = load_image_set(test_index, None, default_cache_dir())
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.count]
    small, labels = test.images[order], test.labels[order]
    large = F.interpolate(small.float(), size=args.size, mode="bicubic", align_corners=False)
    large = large.round().clamp(0, 255).to(torch.uint8)
    rows = {}
    for name, originals, batch in (("64 px", small, 100), (f"{args.size} px", large, 8)):
        x = originals.float() / 255
        p = protect(raeg, originals, batch)
        row = {
            "psnr": round(psnr(p, x).mean().item(), 2),
            "ssim": round(ssim(p, x, data_range=1.0, win_size=7).item(), 4),
            "originals": scores(models, x, labels),
            "protected": scores(models, p, labels),
        }
        if originals is large:
            shrink = lambda t: F.interpolate(t, size=small.shape[-1], mode="area")  # noqa: E731
            row["originals, shrunk to 64 px"] = scores(models, shrink(x), labels)
            row["protected, shrunk to 64 px"] = scores(models, shrink(p), labels)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    with torch.no_grad():
        pixels, records = raeg.encode(large[: args.exact])
        recovered, _ = raeg.decode(pixels, records)
    exact = int((recovered == large[: args.exact]).flatten(1).all(1).sum())
    bits = 8 * sum(len(r) for r in records) / large[: args.exact, 0].numel()
    result = {
        "rows": rows,
        "exact": f"{exact}/{args.exact}",
        "record_bits_per_pixel": round(bits, 3),
        "protector": str(args.protector),
        "targets": [str(path) for path in targets],
        "count": args.count,
        "wall_s": round(time.time() - started, 1),
        "machine": machine(),
    }
    print(
        "| size | P_prt | SSIM | targets on originals | on protected | originals shrunk to 64 px "
        "| protected shrunk to 64 px |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        shrunk = ("originals, shrunk to 64 px", "protected, shrunk to 64 px")
        cells = [row.get(key) for key in shrunk]
        shown = [" / ".join(f"{v:.3f}" for v in c) if c else "" for c in cells]
        print(
            f"| {name} | {row['psnr']:.2f} dB | {row['ssim']:.3f} | "
            f"{' / '.join(f'{v:.3f}' for v in row['originals'])} | "
            f"{' / '.join(f'{v:.3f}' for v in row['protected'])} | {shown[0]} | {shown[1]} |"
        )
    print(f"bit-exact at {args.size} px: {result['exact']}, record {bits:.2f} bits per pixel")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
