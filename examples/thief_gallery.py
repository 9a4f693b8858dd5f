"""What a thief can do: every attack layer and every defence, shown on real CIFAR-10 images.

Applies each registered training-time attack (with parameters drawn from its default range by a
seeded generator) and each registered defence (default settings) to three CIFAR-10 test images,
writes one picture per row (input left, result right, upscaled with nearest neighbours so the
pixels stay visible) and, with ``--page``, a markdown page that shows them with the PSNR of each
result against its input.

    python examples/thief_gallery.py --out docs/assets/thief --page docs/thief.md \
        --comdefend benchmarks/out/comdefend-cifar10
"""

from __future__ import annotations

import argparse
import inspect
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from invprotect.attacks import create_attack, list_attacks
from invprotect.data import default_cifar10_root, load_image_set, scan_image_folder
from invprotect.defences import create_defence, list_defences
from invprotect.metrics import psnr

CLASSES = ("cat", "ship", "horse")


def load_images(root: Path) -> Tensor:
    """The first test image of each of ``CLASSES`` as a float batch in ``[0, 1]``."""
    index = scan_image_folder(root / "test")
    wanted = [index.classes.index(name) for name in CLASSES]
    index.samples = [next(s for s in index.samples if s[1] == label) for label in wanted]
    return load_image_set(index).batch(range(len(CLASSES)))


def mean_psnr(a: Tensor, b: Tensor) -> float:
    """Mean PSNR in dB, identical images counted as 120 dB."""
    return psnr(a, b).clamp(max=120.0).mean().item()


def save_row(before: Tensor, after: Tensor, path: Path, scale: int) -> None:
    """Each image and its result side by side, images in a row, as a PNG."""
    pairs = [torch.cat([b, a], dim=2) for b, a in zip(before, after, strict=True)]
    gap = torch.ones(3, before.shape[2], 4)
    row = torch.cat([t for pair in pairs for t in (pair, gap)][:-1], dim=2)
    pixels = (row.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def describe(obj: object) -> str:
    """The first sentence of an object's class docstring."""
    doc = inspect.getdoc(type(obj)) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_cifar10_root())
    parser.add_argument("--out", type=Path, default=Path("thief-gallery"))
    parser.add_argument("--page", type=Path, default=None, help="write a markdown page here")
    parser.add_argument("--comdefend", type=Path, default=None, help="trained ComDefend weights")
    parser.add_argument("--dip-iterations", type=int, default=500)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.data is None:
        raise SystemExit("CIFAR-10 not found: pass --data or set INVPROTECT_CIFAR10")
    torch.set_num_threads(1)
    images = load_images(args.data)
    rows: list[tuple[str, str, str, float, str]] = []
    generator = torch.Generator().manual_seed(args.seed)
    for name in list_attacks():
        attack = create_attack(name)
        params = attack.sample_params(len(images), generator=generator)
        with torch.no_grad():
            result = attack(images, params=params)
        shown = ", ".join(
            f"{key}={value[0].item():.3g}" for key, value in params.items() if value.numel()
        )
        rows.append(
            (
                "attack",
                name,
                describe(attack),
                mean_psnr(result, images),
                shown,
            )
        )
        save_row(images, result, args.out / f"attack-{name}.png", args.scale)
    for name in list_defences():
        if name == "comdefend" and args.comdefend is None:
            continue
        options = {
            "comdefend": {"weights": args.comdefend},
            "dipdefend": {"max_iterations": args.dip_iterations},
        }.get(name, {})
        defence = create_defence(name, **options)
        result = defence(images)
        settings = f"{type(defence).__name__}({defence.extra_repr()})"
        rows.append(
            (
                "defence",
                name,
                describe(defence),
                mean_psnr(result, images),
                settings,
            )
        )
        save_row(images, result, args.out / f"defence-{name}.png", args.scale)
    for kind, name, _, value, shown in rows:
        print(f"{kind:8} {name:16} {value:6.2f} dB  {shown}")
    if args.page:
        generated = page(rows, args.out, args.page)
        kept = args.page.read_text() if args.page.is_file() else ""
        hand_written = kept[kept.index(HAND_WRITTEN) :] if HAND_WRITTEN in kept else ""
        args.page.write_text(generated + ("\n" + hand_written if hand_written else ""))
        print(f"wrote {args.page} (hand-written sections from {HAND_WRITTEN!r} on kept)")


HAND_WRITTEN = "## The pirate"
"""The first heading of the page's hand-written part, which a regeneration keeps."""


def page(rows: list[tuple[str, str, str, float, str]], images: Path, page_path: Path) -> str:
    """A markdown page showing every row's picture."""
    relative = Path(*[".."] * (len(page_path.parent.parts) - 1)) / images.relative_to("docs")
    lines = [
        "# What a thief can do",
        "",
        "A thief who copies protected images can clean them before training on them. invprotect",
        "trains its protector through differentiable *attacks* that imitate such cleaning, and",
        "judges it against real *defences* that act on 8-bit files. Each picture shows three",
        "CIFAR-10 test images, each as input (left) and result (right), enlarged 4x. PSNR is",
        "measured between result and input.",
        "",
        "Generated by `python examples/thief_gallery.py --out docs/assets/thief --page "
        "docs/thief.md --comdefend benchmarks/out/comdefend-cifar10`.",
    ]
    for kind, title in (("attack", "Training-time attacks"), ("defence", "Defences")):
        lines += ["", f"## {title}", ""]
        for row_kind, name, text, value, shown in rows:
            if row_kind != kind:
                continue
            psnr_text = "identical" if math.isinf(value) or value > 99 else f"{value:.2f} dB"
            lines += [
                f"### `{name}`",
                "",
                f"{text} " + (f"Parameters: `{shown}`. " if shown else "") + f"PSNR {psnr_text}.",
                "",
                f"![{name}]({relative.as_posix()}/{kind}-{name}.png)",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    main()
