"""Folder protect and recover at several image sizes: files per second, cost, memory.

For each size the benchmark writes a folder of files, then in a fresh process per size
times `protect_tree` and `recover_tree` on it (decoding, the network, exact-recovery
residuals, PNG writing: everything a user waits for) and reads that process's peak
resident memory (``VmHWM``: the imports included). In another fresh process it times the
tensor-only pass over the same pixels: `Protector.protect` on float tensors already in
memory, in the same runs of at most `invprotect.tiles.PIXEL_BUDGET` pixels (tiles for the
large image), no files, no records. The ratio of the two is what files and exactness
cost on top of the network.

Inputs: 32 px are CIFAR-10 test files as they are (JPEG); 64 and 256 px are CIFAR-10
test images upsampled (bicubic) and saved as PNG; the large image is a seeded photo-like
PNG (smooth gradients plus noise) of ``--large`` pixels.

Example:
    nice -n 5 .venv/bin/python benchmarks/bench_sizes.py --protector /tmp/demo-final4/protector
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import OUT, machine, peak_rss_mib
from PIL import Image

from invprotect.data import default_cifar10_root
from invprotect.files.images import read_rgb
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.protectors import load_protector
from invprotect.tiles import by_budget, needs_tiles, tile_grid, tile_side

DEFAULT_PROTECTOR = Path(__file__).resolve().parent / "reference" / "proxy" / "protector-margin"
"""A trained ``cpu-32`` RAEG of the reference set (any protector checkpoint will do)."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protector", type=Path, default=DEFAULT_PROTECTOR)
    parser.add_argument("--sizes", type=int, nargs="*", default=[32, 64, 256])
    parser.add_argument("--files", type=int, default=32, help="Files per size.")
    parser.add_argument(
        "--large", default="4000x3000", help="WIDTHxHEIGHT of the large image, or 'none'."
    )
    parser.add_argument("--threads", type=int, default=1, help="Intra-op threads.")
    parser.add_argument("--out", type=Path, default=OUT / "bench_sizes.json")
    parser.add_argument("--child", choices=["folder", "tensor"], help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A seeded ``uint8`` ``(H, W, 3)`` image of smooth gradients plus noise, made by bands."""
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), np.uint8)
    x = np.arange(width, dtype=np.float32)[None, :]
    for top in range(0, height, 256):
        y = np.arange(top, min(height, top + 256), dtype=np.float32)[:, None]
        channels = (
            30 + 200 * x / width,
            40 + 180 * y / height + 20 * np.sin(x / 97),
            60 + 150 * (x + y) / (width + height) + 15 * np.cos(y / 61),
        )
        shape = (y.shape[0], width)
        band = np.stack([np.broadcast_to(channel, shape) for channel in channels], -1)
        band += rng.normal(0.0, 6.0, band.shape).astype(np.float32)
        out[top : top + band.shape[0]] = band.clip(0, 255).astype(np.uint8)
    return out


def _make_inputs(work: Path, sizes: list[int], files: int, large: str) -> list[tuple[str, Path]]:
    """Write the input folders; ``(name, folder)`` per case."""
    test = default_cifar10_root() / "test"
    sources = sorted(test.rglob("*.jpg"))
    picked = [sources[i] for i in np.random.default_rng(0).permutation(len(sources))[:files]]
    cases = []
    for size in sizes:
        folder = work / f"{size}px" / "src"
        folder.mkdir(parents=True)
        for index, path in enumerate(picked):
            if size == 32:
                (folder / f"{index:03d}.jpg").write_bytes(path.read_bytes())
            else:
                with Image.open(path) as image:
                    image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(
                        folder / f"{index:03d}.png"
                    )
        cases.append((f"{size} px", folder))
    if large != "none":
        width, height = (int(side) for side in large.split("x"))
        folder = work / "large" / "src"
        folder.mkdir(parents=True)
        Image.fromarray(photo_like(width, height)).save(folder / "photo.png")
        cases.append((f"{width}x{height}", folder))
    return cases


def seams(original: np.ndarray, protected: np.ndarray, side: int) -> dict[str, float]:
    """How tile borders show in a protected ``(H, W, 3)`` image protected in tiles of ``side``.

    ``psnr_border_db``: PSNR over pixels within 4 px of an inner tile border;
    ``psnr_interior_db``: over the others. ``step_ratio``: the mean jump of the
    perturbation (protected minus original) across a border, over its mean jump between
    any other two neighbouring columns or rows (1: a border is no more visible than any
    other place; a visible seam shows as a ratio well above 1).
    """
    height, width = original.shape[:2]
    perturbation = protected[:height, :width].astype(np.int16) - original.astype(np.int16)
    near = np.zeros((height, width), bool)
    for border in range(side, width, side):
        near[:, border - 4 : border + 4] = True
    for border in range(side, height, side):
        near[border - 4 : border + 4, :] = True
    squared = np.square(perturbation, dtype=np.float32).sum(-1)

    def psnr_db(mask: np.ndarray) -> float:
        return float(10 * np.log10(255**2 * 3 * mask.sum() / max(squared[mask].sum(), 1e-9)))

    jumps, at_border = [], []
    for axis, length in ((1, width), (0, height)):
        step = np.abs(np.diff(perturbation, axis=axis)).mean(axis=(1 - axis, 2))
        borders = np.zeros(length - 1, bool)
        borders[[border - 1 for border in range(side, length, side)]] = True
        jumps.append(step)
        at_border.append(borders)
    step, borders = np.concatenate(jumps), np.concatenate(at_border)
    return {
        "psnr_border_db": psnr_db(near),
        "psnr_interior_db": psnr_db(~near),
        "step_border": float(step[borders].mean()),
        "step_elsewhere": float(step[~borders].mean()),
        "step_ratio": float(step[borders].mean() / step[~borders].mean()),
    }


def _child_folder(protector_path: Path, src: Path) -> dict[str, Any]:
    """Protect and recover ``src`` through the folder pipeline; times, exactness, peak RSS."""
    protector = load_protector(protector_path)
    out = src.parent
    start = time.perf_counter()
    protected = protect_tree(src, out / "protected", protector)
    protect_s = time.perf_counter() - start
    start = time.perf_counter()
    recovered = recover_tree(out / "protected", out / "recovered", protector)
    recover_s = time.perf_counter() - start
    exact = sum(
        np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(back)))
        for path in sorted(src.iterdir())
        if (back := out / "recovered" / path.with_suffix(".png").name).exists()
    )
    entries = [json.loads(line) for line in (out / "protected" / "manifest.jsonl").open()]
    peak = peak_rss_mib()  # before measuring seams, which is no part of the pipeline
    tiled = {}
    for path in sorted(src.iterdir()):
        with Image.open(path) as image:
            if needs_tiles(image.height, image.width, tile_side(protector.side_multiple)):
                with Image.open(out / "protected" / path.with_suffix(".png").name) as done:
                    side = tile_side(protector.side_multiple)
                    tiled[path.name] = seams(np.asarray(image), np.asarray(done), side)
    return {
        "files": protected.written,
        "failed": protected.failed + recovered.failed,
        "exact": int(exact),
        "protect_s": protect_s,
        "recover_s": recover_s,
        "peak_rss_mib": peak,
        "seams": tiled,
        "record_bytes": sum(entry["record_bytes"] for entry in entries),
        "psnr": float(np.mean([e["psnr"] for e in entries])),
    }


@torch.no_grad()
def _child_tensor(protector_path: Path, src: Path) -> dict[str, Any]:
    """Time `Protector.protect` alone over the same pixels, in runs the folder pipeline uses."""
    protector = load_protector(protector_path)
    multiple = protector.side_multiple
    side = tile_side(multiple)
    pieces = []
    for path in sorted(src.iterdir()):
        rgb = read_rgb(path)
        height, width = rgb.shape[-2:]
        rgb = rgb[:, : height - height % multiple or None, : width - width % multiple or None]
        if needs_tiles(*rgb.shape[-2:], side):
            pieces += [tile.of(rgb).contiguous() for tile in tile_grid(*rgb.shape[-2:], side)]
        else:
            pieces.append(rgb)
    shapes: dict[tuple[int, int], list[torch.Tensor]] = {}
    for piece in pieces:
        shapes.setdefault(tuple(piece.shape[-2:]), []).append(piece)
    start = time.perf_counter()
    for same in shapes.values():
        for run in by_budget(same, lambda t: t.shape[-2] * t.shape[-1], limit=64):
            protector.protect(torch.stack(run).float() / 255)
    return {"tensor_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def _run_child(args: argparse.Namespace, kind: str, src: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--src", str(src)]
    command += ["--protector", str(args.protector), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{kind} run on {src} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Run every size (or, as a child, one measurement) and print and save the table."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    if args.child is not None:
        measure = _child_folder if args.child == "folder" else _child_tensor
        print(json.dumps(measure(args.protector, args.src)))
        return
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sizes-") as work:
        for name, src in _make_inputs(Path(work), args.sizes, args.files, args.large):
            folder = _run_child(args, "folder", src)
            tensor = _run_child(args, "tensor", src)
            files = folder["files"]
            row = {
                "size": name,
                **folder,
                "tensor_s": tensor["tensor_s"],
                "tensor_peak_rss_mib": tensor["peak_rss_mib"],
                "protect_files_per_s": files / folder["protect_s"],
                "recover_files_per_s": files / folder["recover_s"],
                "protect_ratio": folder["protect_s"] / tensor["tensor_s"],
                "recover_ratio": folder["recover_s"] / tensor["tensor_s"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = (
        f"{'size':>10} {'files':>5} {'exact':>5} {'protect/s':>9} {'recover/s':>9} "
        f"{'net/s':>8} {'prt ratio':>9} {'rec ratio':>9} {'peak MiB':>8} {'PSNR':>6}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['size']:>10} {row['files']:>5} {row['exact']:>5} "
            f"{row['protect_files_per_s']:>9.3f} {row['recover_files_per_s']:>9.3f} "
            f"{row['files'] / row['tensor_s']:>8.3f} {row['protect_ratio']:>9.2f} "
            f"{row['recover_ratio']:>9.2f} {row['peak_rss_mib']:>8.0f} {row['psnr']:>6.2f}"
        )
    wall = time.perf_counter() - started
    print(f"wall {wall:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine(),
        "protector": str(args.protector),
        "wall_s": wall,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
