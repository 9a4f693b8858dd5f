"""A quick proxy of the thief matrix (issue 14): protect N CIFAR-10 training images, run pirates.

Steps:

1. copy a seeded random subset of ``--train-images`` CIFAR-10 training files to
   ``OUT/originals`` (and, with ``--test-images``, a subset of the test files to ``OUT/test``);
2. protect them into ``OUT/protected`` with ``invprotect protect``'s library function
   (`invprotect.files.protect.protect_tree`; resumes where an earlier run stopped), unless
   ``--protected DIR`` names a folder protected already (its files must keep the relative
   paths of the CIFAR-10 training files: ``cat/0001.png`` for ``train/cat/0001.jpg``);
3. run one pirate (`invprotect.training.pirate.run_pirate`) per row, each ``--epochs``
   epochs of ``--arch`` with the same seed, scored on the clean test images:

   * ``originals``: trains on the originals, no defence: what the key holder gets (the
     recovered set is the originals, bit for bit);
   * ``protected, <defence>`` for each of ``--defences`` (``none``, ``jpeg:quality=10``,
     ``comdefend``, ``learned-inverse``, any registered defence spec);
   * ``protected, none + adversarial training`` with ``--adversarial`` (PGD 8/255, 2/255).

``comdefend`` without weights gets a ComDefend trained by this script with another seed
(``--seed + 1``) on clean training images outside the protected subset, or the checkpoint
of ``--comdefend``. ``learned-inverse`` learns from ``--leaked-count`` pairs of
``OUT/originals`` and ``OUT/protected``.

Prints a table and writes ``OUT/pirate_proxy.json`` (every report, the arguments, the
machine) and ``OUT/accuracy.png`` (accuracy per epoch, one line per row).

Example (the issue's proxy):
    .venv/bin/python benchmarks/pirate_proxy.py --protector benchmarks/out/protector-v3/protector \
        --train-images 10000 --epochs 6 --adversarial
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from common import OUT, REFERENCE_PROTECTOR, machine, subset_index

from invprotect.data import (
    ImageFolderIndex,
    default_cifar10_root,
    load_image_set,
    scan_image_folder,
)
from invprotect.defences import parse_defence_spec, train_comdefend
from invprotect.files.atomic import atomic_write_bytes
from invprotect.files.protect import protect_tree
from invprotect.protectors import load_protector
from invprotect.training.adversarial import PGDConfig
from invprotect.training.pirate import PirateReport, accuracy_plot, run_pirate

DEFAULT_DEFENCES = ["none", "jpeg:quality=10", "comdefend", "learned-inverse"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="default: local CIFAR-10")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--protector", default=str(REFERENCE_PROTECTOR))
    source.add_argument("--protected", type=Path, default=None, help="a folder protected already")
    parser.add_argument("--targets", nargs="*", default=[], help="classifiers a baseline attacks")
    parser.add_argument("--train-images", type=int, default=10_000)
    parser.add_argument("--test-images", type=int, default=None, help="default: all 10,000")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--arch", default="resnet_small")
    parser.add_argument("--defences", nargs="+", default=DEFAULT_DEFENCES)
    parser.add_argument("--adversarial", action="store_true", help="add a PGD-training row")
    parser.add_argument("--comdefend", type=Path, default=None, help="a ComDefend checkpoint")
    parser.add_argument("--comdefend-epochs", type=int, default=4)
    parser.add_argument("--leaked-count", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT / "pirate-proxy")
    return parser.parse_args(argv)


def _copy(index: ImageFolderIndex, dst: Path) -> Path:
    for path, _ in index.samples:
        target = dst / path.relative_to(index.root)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return dst


def _originals_of(protected: Path, train_root: Path) -> ImageFolderIndex:
    """The CIFAR-10 training files whose relative paths (suffix aside) the protected files have."""
    index = scan_image_folder(train_root)
    by_key = {
        p.relative_to(train_root).with_suffix("").as_posix(): (p, y) for p, y in index.samples
    }
    keys = [
        p.relative_to(protected).with_suffix("").as_posix()
        for p, _ in scan_image_folder(protected).samples
    ]
    missing = [key for key in keys if key not in by_key]
    if missing:
        raise SystemExit(
            f"{len(missing)} protected files have no original in {train_root}, e.g. {missing[0]}"
        )
    return ImageFolderIndex(train_root, index.classes, [by_key[key] for key in keys])


def _comdefend(args: argparse.Namespace, train_root: Path, used: ImageFolderIndex) -> Path:
    """A ComDefend checkpoint: ``--comdefend``, or one trained on other clean images."""
    if args.comdefend is not None:
        return args.comdefend
    path = args.out / "comdefend"
    if (path / "config.json").is_file():
        return path
    taken = {p for p, _ in used.samples}
    index = scan_image_folder(train_root)
    others = ImageFolderIndex(
        train_root, index.classes, [s for s in index.samples if s[0] not in taken]
    )
    others = subset_index(others, max(2_000, len(used.samples)), args.seed + 1)
    print(
        f"training ComDefend on {len(others)} other clean images, seed {args.seed + 1}", flush=True
    )
    model = train_comdefend(
        load_image_set(others), epochs=args.comdefend_epochs, seed=args.seed + 1
    )
    return model.save(path)


def main(argv: list[str] | None = None) -> None:
    """Protect the subset, run every pirate, print the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = args.data or default_cifar10_root()
    args.out.mkdir(parents=True, exist_ok=True)
    train_root, test_root = data / "train", data / "test"
    if args.protected is not None:
        originals_index = _originals_of(args.protected, train_root)
        protected = args.protected
    else:
        originals_index = subset_index(scan_image_folder(train_root), args.train_images, args.seed)
    originals = _copy(originals_index, args.out / "originals")
    if args.protected is None:
        protected = args.out / "protected"
        protector = load_protector(args.protector, targets=args.targets)
        began = time.perf_counter()
        tree = protect_tree(originals, protected, protector, batch_size=256)
        if tree.failed:
            raise SystemExit(f"{len(tree.failed)} images failed to protect, e.g. {tree.failed[0]}")
        print(
            f"protected {tree.written} images ({tree.skipped} done before) in "
            f"{time.perf_counter() - began:.0f} s",
            flush=True,
        )
    test = test_root
    if args.test_images is not None:
        test = _copy(
            subset_index(scan_image_folder(test_root), args.test_images, args.seed),
            args.out / "test",
        )
    rows: list[tuple[str, Path, str, PGDConfig | None]] = [("originals", originals, "none", None)]
    for spec in args.defences:
        if parse_defence_spec(spec) == ("comdefend", {}):
            spec = f"comdefend:weights={_comdefend(args, train_root, originals_index)}"
        rows.append(("protected", protected, spec, None))
    if args.adversarial:
        rows.append(("protected", protected, "none", PGDConfig()))
    cache = args.out / "cache"
    reports: list[tuple[str, PirateReport]] = []
    for name, folder, spec, adversarial in rows:
        leaked = originals if spec.startswith("learned-inverse") else None
        report = run_pirate(
            folder,
            test,
            spec,
            args.arch,
            args.epochs,
            leaked_originals=leaked,
            cache_dir=cache,
            adversarial=adversarial,
            leaked_count=args.leaked_count,
            batch_size=args.batch_size,
            seed=args.seed,
        )
        reports.append((name, report))
        print(
            f"{name}, {report.label}: accuracy per epoch {[round(a, 4) for a in report.accuracy]}",
            flush=True,
        )
    names = []
    for name, report in reports:
        defence = report.defence.split(":weights=")[0]
        names.append(
            f"{name}, {defence}" + (" + adversarial training" if report.adversarial else "")
        )
    lines = [
        "| training set, defence | final | peak (epoch) | cleaning PSNR (dB) | s/epoch |",
        "|---|---|---|---|---|",
    ]
    for label, (_, report) in zip(names, reports, strict=True):
        cleaning = "-" if report.cleaning_psnr is None else f"{report.cleaning_psnr:.2f}"
        per_epoch = sum(report.epoch_seconds) / len(report.epoch_seconds)
        lines.append(
            f"| {label} | {report.final_accuracy:.3f} | {report.peak_accuracy:.3f} "
            f"({report.peak_epoch}) | {cleaning} | {per_epoch:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    title = f"{args.arch}, {len(originals_index.samples)} images, {args.epochs} epochs"
    atomic_write_bytes(
        args.out / "accuracy.png", accuracy_plot([r for _, r in reports], title, names)
    )
    summary = {
        "table": table,
        "rows": [{"training_set": name, **report.to_dict()} for name, report in reports],
        "args": {key: str(value) for key, value in vars(args).items()},
        "train_images": len(originals_index.samples),
        "machine": machine(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_bytes(
        args.out / "pirate_proxy.json", (json.dumps(summary, indent=2) + "\n").encode()
    )
    wall = summary["wall_seconds"]
    print(f"wrote {args.out / 'pirate_proxy.json'} and accuracy.png; wall {wall:.0f} s")


if __name__ == "__main__":
    main()
