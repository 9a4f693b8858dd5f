"""Tile seams: a large photo protected as independent tiles, as tiles in context, and whole.

One seeded photo-like image (``bench_sizes.photo_like``) is protected three ways with the
same protector, side by side in one process: as independent tiles (each tile an image of
its own, the layout before the context margin), as tiles in context (each tile inside a
window of `invprotect.tiles.CONTEXT` more pixels, the layout of today) and, as the
reference, as one image. For each way the table gives how tile borders show
(``bench_sizes.seams``: the mean jump of the perturbation across a tile border over the
jump between any other neighbouring columns or rows, 1 meaning no seam; PSNR near the
borders and elsewhere), how far the protected pixels are from the whole image's near the
borders, the record size, the time of `encode_tiles`, and whether `decode_tiles` gives
the original back bit for bit.

Example:
    nice -n 5 .venv/bin/python benchmarks/bench_seams.py --size 1536x1024 --side 512
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_sizes import photo_like, seams
from common import OUT, machine

import invprotect.tiles
from invprotect.protectors import load_protector
from invprotect.tiles import decode_tiles, encode_tiles

DEFAULT_PROTECTOR = Path(__file__).resolve().parent / "reference" / "proxy" / "protector-margin"


def _border_mask(height: int, width: int, side: int) -> np.ndarray:
    """Pixels within 4 px of an inner tile border."""
    near = np.zeros((height, width), bool)
    for border in range(side, width, side):
        near[:, border - 4 : border + 4] = True
    for border in range(side, height, side):
        near[border - 4 : border + 4, :] = True
    return near


def _case(protector: Any, image: torch.Tensor, side: int, context: int) -> dict[str, Any]:
    """Protect and recover ``image`` as tiles with the given context; figures and pixels."""
    invprotect.tiles.CONTEXT = context
    started = time.perf_counter()
    protected, layout, data = encode_tiles(protector, image, side)
    seconds = time.perf_counter() - started
    restored = decode_tiles(protector, protected, data, layout)[0]
    return {
        "margin": layout.margin,
        "protect_s": round(seconds, 2),
        "exact": bool(torch.equal(restored, image)),
        "record_bits_per_pixel": round(8 * len(data) / (image.shape[-2] * image.shape[-1]), 3),
        "pixels": protected,
    }


def main() -> None:
    """Run the three ways and print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protector", type=Path, default=DEFAULT_PROTECTOR)
    parser.add_argument("--size", default="1536x1024", help="WIDTHxHEIGHT of the photo")
    parser.add_argument("--side", type=int, default=512, help="tile side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT / "bench_seams.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    protector = load_protector(args.protector)
    width, height = (int(part) for part in args.size.split("x"))
    original = photo_like(width, height)
    image = torch.from_numpy(original).permute(2, 0, 1).contiguous()
    started = time.perf_counter()
    whole = protector.encode(image[None])[0][0]
    whole_s = time.perf_counter() - started
    near = _border_mask(height, width, args.side)
    rows = {}
    for name, context in (("independent tiles", 0), ("tiles in context", invprotect.tiles.CONTEXT)):
        case = _case(protector, image, args.side, context)
        pixels = case.pop("pixels")
        off = (pixels.float() - whole.float()).abs()
        case["off_whole_near_borders"] = round(off[:, torch.from_numpy(near)].mean().item(), 4)
        case |= seams(original, pixels.permute(1, 2, 0).numpy(), args.side)
        rows[name] = case
    rows["one image (reference)"] = {"protect_s": round(whole_s, 2)} | seams(
        original, whole.permute(1, 2, 0).numpy(), args.side
    )
    print(f"{args.size} photo, tiles of {args.side}, {args.protector.name}")
    print(
        "| way | margin | seam ratio | PSNR near borders / elsewhere | off the whole image "
        "near borders (levels) | record (bits/px) | protect (s) | exact |"
    )
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |")
    for name, row in rows.items():
        print(
            f"| {name} | {row.get('margin', '')} | {row['step_ratio']:.2f} | "
            f"{row['psnr_border_db']:.2f} / {row['psnr_interior_db']:.2f} dB | "
            f"{row.get('off_whole_near_borders', '')} | {row.get('record_bits_per_pixel', '')} | "
            f"{row['protect_s']} | {row.get('exact', '')} |"
        )
    result = {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    result["machine"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
