"""The paper's Table 1 at CIFAR-10 scale: target accuracy on protected images under defences.

Runs `invprotect.evaluation.verify` (the real protect/recover pipeline on a
class-balanced choice of ``--limit`` test files) for the protector ``--protector`` with
the paper's defences: none, real JPEG at quality 90 and 50, resize (0.75: 0.5 destroys
32x32 images by itself), Gaussian noise (sigma 8 levels), median filter (3x3), ComDefend
(``--comdefend``, trained by ``benchmarks/bench_defences.py``) and DIPDefend (on the first
``--dip-limit`` images: about a second per image). It prints the accuracy of each target
on protected images, "protected / clean" (clean: the same defence applied to the
originals), beside the paper's RAEG rows (256x256, pretrained ResNet-50 / DenseNet-121),
writes the verify report (json, md, html, pictures) to ``--out`` and, with ``--docs``, copies
the markdown report and its pictures there for the documentation site.

Example:
    .venv/bin/python benchmarks/paper_table1.py --limit 1000 --docs docs/report
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from common import machine

from invprotect.data import default_cifar10_root
from invprotect.evaluation import VerifyConfig, sample_images, verify, write_report
from invprotect.models import RAEG
from invprotect.targets import Classifier

OUT = Path(__file__).resolve().parent / "out"
TARGETS = Path(__file__).resolve().parent.parent / "runs" / "targets"
COLUMNS = {
    "No attack": None,
    "JPEG 90": "jpeg:quality=90",
    "JPEG 50": "jpeg:quality=50",
    "Resize 0.75": "resize:scale=0.75",
    "Gaussian noise": "gaussian_noise:sigma=8",
    "Median filter": "median_filter:kernel_size=3",
    "ComDefend": "comdefend",
    "DIPDefend": "dipdefend",
}
PAPER_RAEG = {  # Table 1 of Chen et al. 2022, RAEG rows (ResNet-50 / DenseNet-121)
    "Caltech-101": ["0.479 / 0.495", "0.587 / 0.570", "0.752 / 0.721", "0.615 / 0.701",
                    "0.607 / 0.732", "0.504 / 0.672", "0.632 / 0.709", "0.587 / 0.704"],
    "CelebA-100": ["0.060 / 0.093", "0.070 / 0.090", "0.073 / 0.083", "0.103 / 0.127",
                   "0.093 / 0.113", "0.070 / 0.083", "0.080 / 0.093", "0.080 / 0.089"],
    "Mini-ImageNet": ["0.068 / 0.092", "0.082 / 0.113", "0.171 / 0.183", "0.117 / 0.148",
                      "0.129 / 0.118", "0.087 / 0.124", "0.099 / 0.124", "0.101 / 0.183"],
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="default: local CIFAR-10")
    parser.add_argument("--protector", type=Path, default=OUT / "protector-cifar10" / "protector")
    parser.add_argument(
        "--targets", type=Path, nargs="+", default=[TARGETS / "resnet_small", TARGETS / "vgg_small"]
    )
    parser.add_argument("--unseen", type=Path, nargs="*", default=[TARGETS / "densenet_small"])
    parser.add_argument("--comdefend", type=Path, default=OUT / "comdefend-cifar10")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--dip-limit", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT / "table1")
    parser.add_argument("--docs", type=Path, default=None, help="copy report.md and pictures here")
    return parser.parse_args(argv)


def report_spec(report: dict, spec: str) -> str | None:
    """The report's key for a column's defence (ComDefend's carries its weights path)."""
    for found in report["defences"]:
        if found == spec or (":" not in spec and found.split(":")[0] == spec):
            return found
    return None


def row(report: dict, names: list[str], key: str) -> list[str]:
    """One table row: ``key`` (``protected`` or ``clean``) accuracy per column, by model."""
    cells = []
    for spec in COLUMNS.values():
        if spec is None:
            values = report["A_prt" if key == "protected" else "A_ori"]
        elif (found := report_spec(report, spec)) is not None:
            values = report["defences"][found][key]
        else:
            cells.append("-")
            continue
        cells.append(" / ".join(f"{values[name]:.3f}" for name in names))
    return cells


def main(argv: list[str] | None = None) -> None:
    """Run verify and print Table 1."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = args.data or default_cifar10_root()
    protector = RAEG.load(args.protector)
    targets = {p.name: Classifier.load(p) for p in args.targets}
    unseen = {p.name: Classifier.load(p) for p in args.unseen}
    specs = [spec for spec in COLUMNS.values() if spec not in (None, "comdefend")]
    if (args.comdefend / "config.json").is_file():
        specs.insert(-1, f"comdefend:weights={args.comdefend}")
    if args.out.exists():
        shutil.rmtree(args.out)
    config = VerifyConfig(limit=args.limit, defences=tuple(specs), dip_limit=args.dip_limit)
    report = verify(data, protector, targets, unseen, args.out, config)
    write_report(report, sample_images(report, args.out, protector), args.out)
    names = list(targets) + list(unseen)
    lines = [
        "| data set | method | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
        f"| CIFAR-10 ({' / '.join(names)}) | RAEG, protected | "
        + " | ".join(row(report, names, "protected"))
        + " |",
        "| CIFAR-10 | originals, same defence | " + " | ".join(row(report, names, "clean")) + " |",
    ]
    for name, cells in PAPER_RAEG.items():
        lines.append(f"| paper: {name} (256x256) | RAEG | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    result = {
        "table": table,
        "report": str(args.out / "report.json"),
        "images": report["images"],
        "dip_images": args.dip_limit,
        "machine": machine(),
        "wall_seconds": time.perf_counter() - started,
    }
    (args.out / "table1.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.docs is not None:
        args.docs.mkdir(parents=True, exist_ok=True)
        for name in ("report.md", "grid.png", "accuracy.png"):
            shutil.copyfile(args.out / name, args.docs / name)
    print(f"wrote {args.out}; wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
