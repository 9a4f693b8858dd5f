"""The thief's matrix (issue 14, item 3): pirates trained on a protected CIFAR-10 training set.

Steps:

1. decode the CIFAR-10 training images (all of them, or a seeded ``--train-images`` subset)
   and protect them once with ``--protector`` (`Protector.encode`: 8-bit pixels plus the
   recovery record, as the PNG files of ``invprotect protect`` hold them), then recover
   them from pixels and records (`Protector.decode`) and count the images that come back
   bit for bit (with ``--poison-steps N --targets ...``, each image refined by the targeted
   poison of ``invprotect protect --poison-steps``). The protected pixels are kept in
   ``OUT/protected`` (a safetensors checkpoint), so a rerun does not protect again;
2. train one pirate per (row, architecture) cell with `train_pirate` (the same seed for
   every cell), scored on the clean test images after every epoch. Rows (``--rows``):

   * ``originals``: the originals, no defence;
   * ``none``: the protected images as they are;
   * ``jpeg50``, ``jpeg10``, ``grayscale``, ``median3``, ``resize0.75``, ``bitdepth2``:
     the protected images after that defence;
   * ``comdefend``: after the thief's own ComDefend (``--comdefend``, a checkpoint of
     ``invprotect train-defence comdefend`` trained with another seed on other images
     than any ComDefend the protector trained through);
   * ``adversarial``: PGD adversarial training on the protected images (8/255, step 2/255,
     ``--pgd-steps`` steps);
   * ``originals-adversarial``: the same training on the originals, the reference for the row
     above (adversarial training costs clean accuracy on any set);
   * ``learned-inverse``: a U-Net trained on ``--leaked-count`` leaked (original,
     protected) pairs undoes the protection on the whole set (BridgePure);
   * ``key-holder``: the key holder on the recovered set. When every image was recovered
     bit for bit, the set is the originals and the ``originals`` cell of the same
     architecture (same seed) is its result; otherwise a pirate trains on the recovered set.

   Each finished cell is written at once to ``OUT/cells/<row>--<arch>.json``; a rerun skips
   the cells found there, so the matrix can run over several sessions (one run per ``OUT``
   at a time). ``OUT/settings.json`` holds what every cell depends on; a rerun with other
   settings is refused;
3. print a table (final and peak accuracy, and wall time, per row and architecture) of
   every cell in ``OUT/cells``, and write ``OUT/thief.json`` (the table, every cell, the
   protection check, the families the protector was trained against, the machine) and
   ``OUT/accuracy.png`` (accuracy per epoch, one panel per architecture).

Example (the full matrix; ``vgg_small`` is a family the reference protector never saw):
    .venv/bin/python benchmarks/thief.py --protector benchmarks/out/protector-v3/protector \
        --comdefend benchmarks/out/comdefend-thief --archs resnet_small vgg_small \
        --epochs 15 --out benchmarks/out/thief
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import torch
from common import OUT, labelled_chunks, load_subset, machine
from matplotlib.figure import Figure

from invprotect._registry import UnknownNameError
from invprotect.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from invprotect.data import ImageSet
from invprotect.files.atomic import atomic_write_bytes
from invprotect.metrics import psnr
from invprotect.models.poison import PoisonConfig
from invprotect.models.protector import Protector
from invprotect.protectors import load_protector
from invprotect.training.adversarial import PGDConfig
from invprotect.training.pirate import (
    LEARNED_INVERSE,
    NO_DEFENCE,
    PirateProgress,
    check_arch,
    check_defence_spec,
    train_pirate,
)

DEFAULT_DATA = Path("../shared/datasets/cifar10")
BATCH = 256
"""Images per protection batch."""


@dataclass(frozen=True)
class Row:
    """One row of the matrix: what the pirate trains on and how he cleans it first.

    Attributes:
        label: The row's name in the table.
        images: ``"originals"``, ``"protected"`` or ``"recovered"``.
        defence: The pirate's defence spec (`train_pirate`).
        adversarial: Whether the pirate trains adversarially (PGD).
    """

    label: str
    images: str
    defence: str = NO_DEFENCE
    adversarial: bool = False


def matrix_rows(comdefend: Path | None, leaked_count: int) -> dict[str, Row]:
    """The issue's rows by key, in table order (``comdefend`` needs the thief's weights)."""
    weights = f":weights={comdefend}" if comdefend is not None else ""
    return {
        "originals": Row("originals", "originals"),
        "none": Row("protected, no defence", "protected"),
        "jpeg50": Row("protected, JPEG 50", "protected", "jpeg:quality=50"),
        "jpeg10": Row("protected, JPEG 10", "protected", "jpeg:quality=10"),
        "grayscale": Row("protected, grayscale", "protected", "grayscale"),
        "median3": Row("protected, median 3x3", "protected", "median_filter:kernel_size=3"),
        "resize0.75": Row("protected, resize 0.75", "protected", "resize:scale=0.75"),
        "comdefend": Row("protected, ComDefend (thief's)", "protected", f"comdefend{weights}"),
        "bitdepth2": Row("protected, bit depth 2", "protected", "bit_depth:bits=2"),
        "adversarial": Row("protected, PGD adversarial training", "protected", adversarial=True),
        "originals-adversarial": Row(
            "originals, PGD adversarial training", "originals", adversarial=True
        ),
        "learned-inverse": Row(
            f"protected, learned inverse ({leaked_count} pairs)", "protected", LEARNED_INVERSE
        ),
        "key-holder": Row("key holder, recovered set", "recovered"),
    }


ROW_KEYS = list(matrix_rows(None, 500))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protector", type=Path, required=True, help="a protector checkpoint")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="train/ and test/")
    parser.add_argument("--archs", nargs="+", default=["resnet_small", "vgg_small"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-images", type=int, default=None, help="default: all")
    parser.add_argument("--test-images", type=int, default=None, help="default: all")
    parser.add_argument("--rows", nargs="+", choices=ROW_KEYS, default=ROW_KEYS)
    parser.add_argument("--comdefend", type=Path, default=None, help="the thief's ComDefend")
    parser.add_argument("--leaked-count", type=int, default=500)
    parser.add_argument("--pgd-steps", type=int, default=4)
    parser.add_argument("--poison-steps", type=int, default=0, help="protect --poison-steps")
    parser.add_argument("--targets", type=Path, nargs="*", default=[], help="what it attacks")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--device", default=None, help="where pirates train (default: a GPU)")
    parser.add_argument(
        "--protect-device", default=None, help="where the set is protected (default: the CPU)"
    )
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT / "thief")
    args = parser.parse_args(argv)
    if "comdefend" in args.rows and args.comdefend is None:
        parser.error(
            "the comdefend row needs --comdefend DIR: the thief's ComDefend, trained with "
            "`invprotect train-defence comdefend` (another seed, other images than the "
            "protector's); or leave the row out with --rows"
        )
    return args


@dataclass
class ProtectedSet:
    """The training set protected once, and what recovery gave back.

    Attributes:
        protected: The protected images (``uint8``, as the files hold them).
        recovered: The images recovered from pixels and records.
        exact: Images recovered bit for bit.
        psnr: Mean PSNR (dB) of the protected images against the originals.
        seconds: Wall time of protection and recovery.
        cached: Whether it was read from an earlier run's cache.
    """

    protected: ImageSet
    recovered: ImageSet
    exact: int
    psnr: float
    seconds: float
    cached: bool = False

    def summary(self) -> dict[str, Any]:
        """The figures of the check, JSON-serialisable."""
        images = len(self.protected)
        return {
            "images": images,
            "exact": self.exact,
            "exact_rate": self.exact / images,
            "psnr": round(self.psnr, 3),
            "seconds": round(self.seconds, 1),
            "cached": self.cached,
        }


def _like(base: ImageSet, pixels: torch.Tensor) -> ImageSet:
    return ImageSet(pixels, base.labels, base.classes, base.paths)


def protect_set(protector: Protector, originals: ImageSet, cache: Path) -> ProtectedSet:
    """Protect ``originals`` (8-bit, with records), recover them, count exact recoveries.

    The result is kept in the checkpoint directory ``cache`` (the recovered pixels only
    where some image differs from its original) and read from there on the next call.

    Raises:
        SystemExit: If ``cache`` holds images of another protector or other originals.
    """
    identity = {"key_id": protector.key_id, "originals": originals.fingerprint()}
    if (cache / "config.json").is_file():
        tensors, config = load_checkpoint(cache)
        if {key: config.get(key) for key in identity} != identity:
            raise SystemExit(
                f"{cache} holds images protected by another protector or from other "
                "originals; use another --out"
            )
        protected = _like(originals, tensors["protected"])
        recovered = _like(originals, tensors.get("recovered", originals.images))
        return ProtectedSet(
            protected, recovered, config["exact"], config["psnr"], config["seconds"], cached=True
        )
    started = time.perf_counter()
    protected_chunks, recovered_chunks = [], []
    with torch.set_grad_enabled(protector.attacks_targets):
        for chunk, names in labelled_chunks(originals, BATCH):
            pixels, records = protector.encode(chunk, names)
            protected_chunks.append(pixels)
            recovered_chunks.append(protector.decode(pixels, records)[0])
    protected, recovered = torch.cat(protected_chunks), torch.cat(recovered_chunks)
    exact = int((recovered == originals.images).flatten(1).all(1).sum())
    quality = psnr(protected.float() / 255, originals.images.float() / 255).mean().item()
    seconds = time.perf_counter() - started
    tensors = {"protected": protected}
    if exact < len(originals):
        tensors["recovered"] = recovered
    save_checkpoint(
        cache, tensors, {**identity, "exact": exact, "psnr": quality, "seconds": seconds}
    )
    return ProtectedSet(
        _like(originals, protected), _like(originals, recovered), exact, quality, seconds
    )


def protector_families(protector: Protector) -> list[str] | None:
    """The architectures the protector was trained against, from its metadata.

    Each entry of the metadata's ``targets`` is a classifier checkpoint; its
    ``config.json`` names the architecture (the folder's name where it cannot be read).
    ``None`` when the metadata names no targets.
    """
    targets = protector.describe().get("metadata", {}).get("targets")
    if not targets:
        return None
    families = []
    for target in targets:
        try:
            families.append(json.loads((Path(target) / "config.json").read_text())["arch"])
        except (OSError, ValueError, KeyError, TypeError):
            families.append(Path(target).name)
    return families


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Write ``settings`` to ``path``, or refuse if the cells there were made with others."""
    if not path.is_file():
        atomic_write_bytes(path, (json.dumps(settings, indent=2) + "\n").encode())
        return
    before = json.loads(path.read_text())
    changed = [key for key in settings if before.get(key) != settings[key]]
    if changed:
        details = ", ".join(
            f"{key} {before.get(key)!r} there, {settings[key]!r} now" for key in changed
        )
        raise SystemExit(
            f"{path.parent} holds cells made with other settings ({details}); "
            "use another --out, or the same settings to resume"
        )


def _show(cell: str) -> Callable[[PirateProgress], None]:
    """A progress callback printing each stage's start and each epoch's accuracy."""
    stages: set[str] = set()

    def show(event: PirateProgress) -> None:
        if event.stage not in stages:
            stages.add(event.stage)
            print(f"  {cell}: {event.stage} ({event.total})", flush=True)
        if event.stage == "training" and "test accuracy" in event.status:
            print(f"  {cell}: {event.status}", flush=True)

    return show


def run_cell(
    key: str,
    row: Row,
    arch: str,
    images: dict[str, ImageSet],
    test: ImageSet,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train the pirate of one cell and return its record."""
    started = time.perf_counter()
    report = train_pirate(
        images[row.images],
        test,
        row.defence,
        arch,
        args.epochs,
        adversarial=PGDConfig(steps=args.pgd_steps) if row.adversarial else None,
        leaked_originals=images["originals"] if row.defence == LEARNED_INVERSE else None,
        leaked_count=args.leaked_count,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=_show(f"{key}, {arch}"),
    )
    return {
        "row": key,
        "label": row.label,
        "arch": arch,
        "report": report.to_dict(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }


def _cell_path(cells: Path, key: str, arch: str) -> Path:
    return cells / f"{key}--{arch}.json"


def read_cells(cells: Path, rows: dict[str, Row]) -> list[dict[str, Any]]:
    """Every cell written under ``cells``, in row order, then by architecture."""
    found = [json.loads(path.read_text()) for path in sorted(cells.glob("*--*.json"))]
    order = {key: i for i, key in enumerate(rows)}
    return sorted(found, key=lambda cell: (order.get(cell["row"], len(order)), cell["arch"]))


def table(cells: list[dict[str, Any]], rows: dict[str, Row], seen: list[str] | None) -> str:
    """A markdown table: final accuracy, peak accuracy (epoch) and wall time per row and arch."""
    archs = sorted({cell["arch"] for cell in cells})
    by_cell = {(cell["row"], cell["arch"]): cell for cell in cells}

    def family(arch: str) -> str:
        return arch if seen is None else f"{arch} ({'seen' if arch in seen else 'unseen'})"

    header = ["training set"]
    for arch in archs:
        header += [f"{family(arch)} final", "peak (epoch)", "wall (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in [key for key in rows if any((key, arch) in by_cell for arch in archs)]:
        line = [rows[key].label]
        for arch in archs:
            cell = by_cell.get((key, arch))
            if cell is None:
                line += ["-", "-", "-"]
                continue
            report = cell["report"]
            line += [
                f"{report['final_accuracy']:.3f}",
                f"{report['peak_accuracy']:.3f} ({report['peak_epoch']})",
                f"{cell['wall_seconds']:.0f}",
            ]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def plot(cells: list[dict[str, Any]], rows: dict[str, Row], title: str) -> bytes:
    """A PNG: clean-test accuracy per epoch, one panel per architecture, one line per row.

    Each row keeps its colour in every panel; the legend sits below the panels.
    """
    archs = sorted({cell["arch"] for cell in cells})
    colours = matplotlib.colormaps["tab20"]
    figure = Figure(figsize=(1.0 + 5.0 * len(archs), 6.0), dpi=100)
    panels = figure.subplots(1, len(archs), squeeze=False, sharey=True)[0]
    legend: dict[str, Any] = {}
    for axes, arch in zip(panels, archs, strict=True):
        epochs = 1
        for cell in [cell for cell in cells if cell["arch"] == arch]:
            accuracy = cell["report"]["accuracy"]
            epochs = max(epochs, len(accuracy))
            index = list(rows).index(cell["row"]) if cell["row"] in rows else len(rows)
            (line,) = axes.plot(
                range(1, len(accuracy) + 1),
                accuracy,
                marker="o",
                markersize=3,
                color=colours(2 * index % 20 + 2 * index // 20),  # ten hues, then light ones
                linestyle="--" if cell["row"] == "key-holder" else "-",
            )
            legend.setdefault(cell["label"], line)
        axes.set_title(arch)
        axes.set_xlabel("epoch")
        axes.set_xticks(range(1, epochs + 1))
        axes.set_ylim(0.0, 1.0)
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("clean-test accuracy")
    figure.suptitle(title)
    columns = min(3, len(archs) + 1)
    figure.legend(
        list(legend.values()), list(legend), loc="lower center", ncol=columns, fontsize="small"
    )
    figure.tight_layout(rect=(0.0, 0.03 + 0.04 * math.ceil(len(legend) / columns), 1.0, 1.0))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    """Protect the training set once, run every missing cell, print and write the matrix."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(json.dumps({"command": sys.argv, "machine": machine()}), flush=True)
    rows = matrix_rows(args.comdefend, args.leaked_count)
    try:
        for arch in args.archs:
            check_arch(arch)
        for key in args.rows:
            check_defence_spec(rows[key].defence)
        poison = PoisonConfig(steps=args.poison_steps) if args.poison_steps else None
        protector = load_protector(args.protector, args.protect_device, args.targets, poison)
    except (UnknownNameError, CheckpointError, ValueError) as error:
        raise SystemExit(str(error)) from None
    train_root, test_root = args.data / "train", args.data / "test"
    if not (train_root.is_dir() and test_root.is_dir()):
        raise SystemExit(f"--data {args.data} must hold train/ and test/ ImageFolders")
    originals = load_subset(train_root, args.train_images, args.seed)
    test = load_subset(test_root, args.test_images, args.seed)
    out = args.out
    _check_settings(
        out / "settings.json",
        {
            "protector_key_id": protector.key_id,
            "train_images": len(originals),
            "originals": originals.fingerprint(),
            "test_images": len(test),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "leaked_count": args.leaked_count,
            "pgd_steps": args.pgd_steps,
            **({"poison_steps": args.poison_steps} if args.poison_steps else {}),
        },
    )
    protection = protect_set(protector, originals, out / "protected")
    check = protection.summary()
    where = f"read from {out / 'protected'}" if protection.cached else "protected now"
    print(
        f"{check['images']} training images protected ({where}; {check['seconds']:.0f} s), "
        f"PSNR {check['psnr']:.2f} dB; recovered bit for bit: {check['exact']}/"
        f"{check['images']} ({check['exact_rate']:.2%})",
        flush=True,
    )
    families = protector_families(protector)
    print(f"protector trained against: {families or 'unknown (no targets in its metadata)'}")
    images = {
        "originals": originals,
        "protected": protection.protected,
        "recovered": protection.recovered,
    }
    cells_dir = out / "cells"
    for key in [key for key in rows if key in args.rows]:
        for arch in args.archs:
            path = _cell_path(cells_dir, key, arch)
            if path.is_file():
                print(f"{key}, {arch}: done before ({path})", flush=True)
                continue
            reuse = _cell_path(cells_dir, "originals", arch)
            if key == "key-holder" and protection.exact == len(originals) and reuse.is_file():
                cell = json.loads(reuse.read_text()) | {
                    "row": key,
                    "label": rows[key].label,
                    "reused_from": "originals: the recovered set is the originals, bit for bit",
                }
                print(f"{key}, {arch}: the originals' cell (recovery was bit-exact)", flush=True)
            else:
                print(f"{key}, {arch}: {rows[key].label}", flush=True)
                cell = run_cell(key, rows[key], arch, images, test, args)
            atomic_write_bytes(path, (json.dumps(cell, indent=2) + "\n").encode())
            report = cell["report"]
            print(
                f"{key}, {arch}: final {report['final_accuracy']:.4f}, peak "
                f"{report['peak_accuracy']:.4f} (epoch {report['peak_epoch']}), "
                f"wall {cell['wall_seconds']:.0f} s",
                flush=True,
            )
    cells = read_cells(cells_dir, rows)
    text = table(cells, rows, families)
    print(text)
    title = f"pirates trained on {len(originals)} CIFAR-10 images, epochs: {args.epochs}"
    atomic_write_bytes(out / "accuracy.png", plot(cells, rows, title))
    summary = {
        "table": text,
        "protector": {
            "path": str(args.protector),
            "key_id": protector.key_id,
            "trained_against": families,
            "describe": protector.describe(),
        },
        "archs_unseen_by_protector": None
        if families is None
        else sorted({cell["arch"] for cell in cells} - set(families)),
        "protection": check,
        "cells": cells,
        "command": sys.argv,
        "args": {key: str(value) for key, value in vars(args).items()},
        "machine": machine(),
        "session_wall_seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_bytes(out / "thief.json", (json.dumps(summary, indent=2) + "\n").encode())
    wall = summary["session_wall_seconds"]
    print(f"wrote {out / 'thief.json'} and {out / 'accuracy.png'}; wall {wall:.0f} s")


if __name__ == "__main__":
    main()
