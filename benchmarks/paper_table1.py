"""The paper's Table 1 at CIFAR-10 scale: target accuracy on protected images under defences.

Runs `invprotect.evaluation.verify` (the real protect/recover pipeline on a class-balanced
choice of ``--limit`` test files, the same files for every method, less those a method
refuses: the baselines cannot hide their data in a few flat or noisy images) for each of
``--protectors`` (a RAEG checkpoint and the paper's baselines ``rae-igsm``, ``rae-cw``,
``rit-igsm``, which attack the same ``--targets``) with the paper's defences: none, real
JPEG at quality 90 and 50, resize (0.75: 0.5 destroys 32x32 images by itself), Gaussian
noise (sigma 8 levels), median filter (3x3), ComDefend (``--comdefend``, trained by
``benchmarks/bench_defences.py``) and DIPDefend (on the first ``--dip-limit`` images:
about a second per image). It prints the accuracy of each target on protected images per
method and on the originals under the same defence, then PSNR, SSIM and exact-recovery
rate per method, beside the paper's rows (256x256, pretrained ResNet-50 / DenseNet-121).
Each method's verify report (json, md, html, pictures) goes to ``OUT/<method>``; a method
whose report is there already is not run again (delete its folder to rerun it). With
``--docs``, the first method's markdown report and its pictures are copied there for the
documentation site.

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
from common import METHODS, machine, method_name

from invprotect.data import default_cifar10_root
from invprotect.evaluation import VerifyConfig, sample_images, verify, write_report
from invprotect.protectors import load_protector
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
PAPER = {  # Table 1 of Chen et al. 2022 (ResNet-50 / DenseNet-121), by data set and method
    "Caltech-101": {
        "RAEG": ["0.479 / 0.495", "0.587 / 0.570", "0.752 / 0.721", "0.615 / 0.701",
                 "0.607 / 0.732", "0.504 / 0.672", "0.632 / 0.709", "0.587 / 0.704"],
        "RAE-IGSM": ["0.076 / 0.063", "0.376 / 0.394", "0.890 / 0.873", "0.755 / 0.712",
                     "0.816 / 0.822", "0.823 / 0.799", "0.748 / 0.752", "0.843 / 0.835"],
        "RAE-CW": ["0.656 / 0.673", "0.955 / 0.958", "0.961 / 0.967", "0.950 / 0.961",
                   "0.957 / 0.942", "0.880 / 0.868", "0.937 / 0.921", "0.891 / 0.903"],
        "RIT-IGSM": ["0.679 / 0.850", "0.697 / 0.854", "0.693 / 0.854", "0.677 / 0.872",
                     "0.729 / 0.888", "0.693 / 0.829", "0.779 / 0.891", "0.747 / 0.893"],
    },
    "CelebA-100": {
        "RAEG": ["0.060 / 0.093", "0.070 / 0.090", "0.073 / 0.083", "0.103 / 0.127",
                 "0.093 / 0.113", "0.070 / 0.083", "0.080 / 0.093", "0.080 / 0.089"],
        "RAE-IGSM": ["0.003 / 0.001", "0.003 / 0.003", "0.275 / 0.267", "0.053 / 0.066",
                     "0.113 / 0.125", "0.343 / 0.359", "0.257 / 0.298", "0.387 / 0.365"],
        "RAE-CW": ["0.493 / 0.452", "0.762 / 0.733", "0.796 / 0.762", "0.773 / 0.745",
                   "0.752 / 0.736", "0.657 / 0.662", "0.710 / 0.694", "0.656 / 0.677"],
        "RIT-IGSM": ["0.114 / 0.442", "0.380 / 0.428", "0.137 / 0.421", "0.127 / 0.391",
                     "0.174 / 0.515", "0.204 / 0.522", "0.224 / 0.539", "0.197 / 0.572"],
    },
    "Mini-ImageNet": {
        "RAEG": ["0.068 / 0.092", "0.082 / 0.113", "0.171 / 0.183", "0.117 / 0.148",
                 "0.129 / 0.118", "0.087 / 0.124", "0.099 / 0.124", "0.101 / 0.183"],
        "RAE-IGSM": ["0.192 / 0.225", "0.488 / 0.473", "0.819 / 0.835", "0.687 / 0.691",
                     "0.770 / 0.796", "0.790 / 0.788", "0.796 / 0.802", "0.823 / 0.819"],
        "RAE-CW": ["0.434 / 0.451", "0.929 / 0.917", "0.923 / 0.940", "0.902 / 0.925",
                   "0.924 / 0.912", "0.859 / 0.863", "0.900 / 0.878", "0.870 / 0.856"],
        "RIT-IGSM": ["0.572 / 0.805", "0.586 / 0.791", "0.623 / 0.791", "0.609 / 0.813",
                     "0.751 / 0.879", "0.655 / 0.799", "0.755 / 0.860", "0.751 / 0.880"],
    },
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="default: local CIFAR-10")
    parser.add_argument(
        "--protectors",
        nargs="+",
        default=METHODS,
        help="RAEG checkpoints and baseline names",
    )
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


def run_method(spec: str, args: argparse.Namespace, specs: list[str]) -> dict:
    """Verify one protector into ``OUT/<method>`` (or read the report a finished run left)."""
    out = args.out / method_name(spec)
    if (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    if out.exists():
        shutil.rmtree(out)  # an interrupted run
    protector = load_protector(spec, targets=args.targets)
    targets = {p.name: Classifier.load(p) for p in args.targets}
    unseen = {p.name: Classifier.load(p) for p in args.unseen}
    config = VerifyConfig(limit=args.limit, defences=tuple(specs), dip_limit=args.dip_limit)
    report = verify(args.data, protector, targets, unseen, out, config)
    write_report(report, sample_images(report, out, protector), out)
    return report.to_dict()


def main(argv: list[str] | None = None) -> None:
    """Run verify for every method and print Table 1 and the quality table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.data = args.data or default_cifar10_root()
    specs = [spec for spec in COLUMNS.values() if spec not in (None, "comdefend")]
    if (args.comdefend / "config.json").is_file():
        specs.insert(-1, f"comdefend:weights={args.comdefend}")
    reports = {method_name(spec): run_method(spec, args, specs) for spec in args.protectors}
    first = next(iter(reports.values()))
    names = list(first["targets"]) + list(first["unseen"])
    lines = [
        "| data set | method | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for method, report in reports.items():
        lines.append(
            f"| CIFAR-10 ({' / '.join(names)}) | {method} | "
            + " | ".join(row(report, names, "protected"))
            + " |"
        )
    lines.append(
        "| CIFAR-10 | originals, same defence | " + " | ".join(row(first, names, "clean")) + " |"
    )
    for data_set, methods in PAPER.items():
        for method, cells in methods.items():
            lines.append(f"| paper: {data_set} (256x256) | {method} | " + " | ".join(cells) + " |")
    quality = [
        "| method | images (refused) | P_prt (dB) | S_prt | exact recovery | P_rev (dB) | S_rev "
        "| wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, report in reports.items():
        quality.append(
            f"| {method} | {report['images']} ({len(report['failed'])}) | "
            f"{report['P_prt']:.2f} | {report['S_prt']:.3f} | "
            f"{report['exact_rate']:.1%} | {report['P_rev']:.2f} | {report['S_rev']:.4f} | "
            f"{report['wall_seconds']:.0f} |"
        )
    table = "\n".join(lines) + "\n\n" + "\n".join(quality)
    print(table)
    result = {
        "table": table,
        "reports": {method: str(args.out / method / "report.json") for method in reports},
        "images": first["images"],
        "dip_images": args.dip_limit,
        "machine": machine(),
        "wall_seconds": time.perf_counter() - started,
    }
    (args.out / "table1.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.docs is not None:
        args.docs.mkdir(parents=True, exist_ok=True)
        source = args.out / next(iter(reports))
        for name in ("report.md", "grid.png", "accuracy.png"):
            shutil.copyfile(source / name, args.docs / name)
    print(f"wrote {args.out}; wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
