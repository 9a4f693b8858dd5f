"""The paper's Table 4 at CIFAR-10 scale: ablations of RAEG at the same protected-image PSNR.

Five protectors are trained by `scan_protector.py` (``--workers`` at a time, one thread
each) with the same steps and target PSNR (``--target-psnr``, 27 dB as in the paper):

* ``G using Enc-Dec``: two independent residual U-Nets instead of the invertible U-Net;
* ``w/o discriminator``: GAN weight ``delta = 0`` (the discriminator still trains, unused);
* ``w/o perceptual loss``: ``alpha = 0``;
* ``one target``: trained against ``--single-target`` only, not the ensemble;
* ``full``: the default recipe against the ensemble ``--targets``.

Columns as in the paper: P_rev, the PSNR of the network's own recovery of the 8-bit
protected image (the exactness residual would make it infinite for every setting);
A_prt, accuracy of ``--single-target`` on protected images; A_tran, accuracy of the
``--unseen`` model no setting trained against; A_def, mean accuracy of the ensemble
members after the defences JPEG 50, resize 0.75, Gaussian noise (sigma 8) and a 3x3
median filter. P_prt and S_prt are printed beside them. Evaluation on ``--eval-images``
seeded random test images. Writes ``--json`` (the scan's record plus the table).

Example:
    .venv/bin/python benchmarks/paper_table4.py --steps 1500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import scan_protector
from common import machine

OUT = Path(__file__).resolve().parent / "out"
TARGETS = Path(__file__).resolve().parent.parent / "runs" / "targets"
DEFENCES = [
    "jpeg:quality=50",
    "resize:scale=0.75",
    "gaussian_noise:sigma=8",
    "median_filter:kernel_size=3",
]
PAPER = [  # Table 4 of Chen et al. 2022 (Mini-ImageNet, ResNet-50, P_prt about 27 dB)
    ("G using Enc-Dec", 31.37, 0.479, 0.569, 0.803),
    ("w/o discriminator", 37.53, 0.241, 0.265, 0.491),
    ("w/o perceptual loss", 38.62, 0.197, 0.247, 0.343),
    ("one target", 42.61, 0.124, 0.267, 0.673),
    ("full", 40.14, 0.093, 0.082, 0.122),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--target-psnr", type=float, default=27.0)
    parser.add_argument(
        "--targets", type=Path, nargs="+", default=[TARGETS / "resnet_small", TARGETS / "vgg_small"]
    )
    parser.add_argument("--single-target", type=Path, default=TARGETS / "resnet_small")
    parser.add_argument("--unseen", type=Path, default=TARGETS / "densenet_small")
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=OUT / "table4.json")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the script only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train the five settings, measure them and print Table 4."""
    args = parse_args(argv)
    started = time.perf_counter()
    psnr = {"target_psnr": args.target_psnr}
    settings = {
        "G using Enc-Dec": psnr | {"architecture": "encoder-decoder"},
        "w/o discriminator": psnr | {"delta": 0.0},
        "w/o perceptual loss": psnr | {"alpha": 0.0},
        "one target": psnr | {"targets": [str(args.single_target)]},
        "full": psnr,
    }
    scan_json = args.json.with_name(args.json.stem + ".scan.json")
    scan_args = ["--variants", json.dumps(list(settings.values())), "--steps", str(args.steps)]
    scan_args += ["--targets", *map(str, args.targets), "--unseen", str(args.unseen)]
    scan_args += ["--defences", *DEFENCES, "--eval-images", str(args.eval_images)]
    scan_args += ["--workers", str(args.workers), "--json", str(scan_json)]
    scan_protector.main([*scan_args, "--quick"] if args.quick else scan_args)
    records = json.loads(scan_json.read_text())["variants"]
    single, unseen = args.single_target.name, args.unseen.name
    lines = [
        f"| setting | P_rev (dB) | A_prt ({single}) | A_tran ({unseen}) | A_def | P_prt | S_prt |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, record in zip(settings, records, strict=True):
        lines.append(
            f"| {name} | {record['P_rev_net']:.2f} | {record['A_prt'][single]:.3f} | "
            f"{record['A_prt'][unseen]:.3f} | {record['A_def']:.3f} | {record['P_prt']:.2f} | "
            f"{record['S_prt']:.3f} |"
        )
    for name, p_rev, a_prt, a_tran, a_def in PAPER:
        lines.append(
            f"| paper: {name} (Mini-ImageNet 256x256) | {p_rev:.2f} | {a_prt:.3f} | "
            f"{a_tran:.3f} | {a_def:.3f} | about 27 | - |"
        )
    table = "\n".join(lines)
    print(table)
    result = {
        "table": table,
        "settings": dict(zip(settings, records, strict=True)),
        "machine": machine(),
        "wall_seconds": time.perf_counter() - started,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}; wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
