"""Seconds per image to protect and to recover, for RAEG and the baselines, in one run.

Every method works folder to folder on the same ``--files`` CIFAR-10 test files (JPEG in,
PNG with its recovery data out, then back), through `protect_tree` and `recover_tree`,
one method after the other in this process, so the figures are comparable. Baselines
attack the ``--targets`` ensemble. Prints a table and writes JSON (``--json``).

Example:
    .venv/bin/python benchmarks/speed_protectors.py --files 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import METHODS, machine, method_name

from invprotect.data import default_cifar10_root, train_test_split
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.protectors import load_protector

OUT = Path(__file__).resolve().parent / "out"
TARGETS = Path(__file__).resolve().parent.parent / "runs" / "targets"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: local CIFAR-10")
    parser.add_argument(
        "--protectors",
        nargs="+",
        default=METHODS,
    )
    parser.add_argument(
        "--targets", type=Path, nargs="+", default=[TARGETS / "resnet_small", TARGETS / "vgg_small"]
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=OUT / "speed_protectors.json")
    return parser.parse_args(argv)


def time_method(spec: str, src: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Protect then recover ``src`` with one protector; seconds per image of each."""
    protector = load_protector(spec, targets=args.targets)
    started = time.perf_counter()
    protected = protect_tree(src, work / "protected", protector, args.batch_size)
    protect_seconds = time.perf_counter() - started
    started = time.perf_counter()
    recovered = recover_tree(work / "protected", work / "recovered", protector, args.batch_size)
    recover_seconds = time.perf_counter() - started
    return {
        "protector": spec,
        "files": protected.written,
        "failed": len(protected.failed) + len(recovered.failed),
        "approximate": len(recovered.approximate),
        "mismatched": len(recovered.mismatched),
        "protect_seconds_per_image": protect_seconds / max(1, protected.written),
        "recover_seconds_per_image": recover_seconds / max(1, recovered.written),
    }


def main(argv: list[str] | None = None) -> None:
    """Time every method and write the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _, test_index = train_test_split(args.data or default_cifar10_root())
    step = max(1, len(test_index.samples) // args.files)  # spread over the classes
    chosen = test_index.samples[::step][: args.files]
    rows = []
    with tempfile.TemporaryDirectory(prefix="speed-protectors-") as scratch:
        src = Path(scratch) / "originals"
        for path, label in chosen:
            target = src / test_index.classes[label] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        for number, spec in enumerate(args.protectors):
            rows.append(time_method(spec, src, Path(scratch) / str(number), args))
            print(json.dumps(rows[-1]), flush=True)
    report = {"rows": rows, "machine": machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("| method | files | protect s/image | recover s/image | recovered exactly |")
    print("|---|---|---|---|---|")
    for r in rows:
        exact = r["files"] - r["approximate"] - r["mismatched"]
        name, protect = method_name(r["protector"]), r["protect_seconds_per_image"]
        print(
            f"| {name} | {r['files']} | {protect:.4f} | "
            f"{r['recover_seconds_per_image']:.4f} | {exact}/{r['files']} |"
        )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
