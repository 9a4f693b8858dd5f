"""The paper's Table 2 at CIFAR-10 scale: RAEG at three protection strengths.

Trains one ``cpu-32`` protector per target PSNR (``--psnrs``, default 30, 27 and 25 dB,
the paper's three settings) with ``benchmarks/bench_protector.py`` (``--steps`` each, one
thread), evaluates each on ``--eval-images`` seeded random test images, and prints A_ori,
A_prt, A_rev, P_prt, P_rev, S_prt, S_rev beside the paper's rows. It also draws A_prt
against P_prt for each target (``--plot``). Each strength's training is resumable and a
finished one is reused, so the script can be stopped and started again.

Example:
    .venv/bin/python benchmarks/paper_table2.py --steps 2000 --plot docs/assets/table2.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import bench_protector
import matplotlib
from common import machine

matplotlib.use("Agg")
from matplotlib.figure import Figure

OUT = Path(__file__).resolve().parent / "out"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--psnrs", type=float, nargs="+", default=[30.0, 27.0, 25.0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT / "table2")
    parser.add_argument("--plot", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Train and evaluate each strength, print the table, draw the plot."""
    args = parse_args(argv)
    started = time.perf_counter()
    rows = []
    for target in args.psnrs:
        out = args.out / f"psnr-{target:g}"
        bench_protector.main(
            [
                *("--target-psnr", str(target), "--steps", str(args.steps)),
                *("--eval-images", str(args.eval_images), "--threads", str(args.threads)),
                *("--out", str(out), "--skip", "speed", "folder"),
            ]
        )
        report = json.loads((out / "bench.json").read_text())
        rows.append((target, report["evaluate"], report.get("training", {})))
    names = list(rows[0][1]["A_prt"])
    lines = [
        "| target PSNR | A_ori | A_prt | A_rev | P_prt | P_rev | S_prt | S_rev |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target, ev, _ in rows:

        def cell(key: str, ev: dict = ev) -> str:
            return " / ".join(f"{ev[key][n]:.3f}" for n in names)

        lines.append(
            f"| {target:g} dB | {cell('A_ori')} | {cell('A_prt')} | {cell('A_rev')} | "
            f"{ev['P_prt']:.2f} | {ev['P_rev']:.2f} | {ev['S_prt']:.3f} | {ev['S_rev']:.3f} |"
        )
    table = "\n".join(lines)
    print(f"models: {' / '.join(names)}")
    print(table)
    if args.plot is not None:
        figure = Figure(figsize=(5, 3.5))
        axes = figure.add_subplot()
        for name in names:
            points = sorted((ev["P_prt"], ev["A_prt"][name]) for _, ev, _ in rows)
            axes.plot(*zip(*points, strict=True), marker="o", label=name)
        axes.set_xlabel("P_prt (dB)")
        axes.set_ylabel("A_prt")
        axes.set_title("Accuracy on protected CIFAR-10 test images")
        axes.legend()
        figure.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot, dpi=120)
    result = {
        "table": table,
        "models": names,
        "rows": [{"target_psnr": t, "evaluate": ev, "training": tr} for t, ev, tr in rows],
        "machine": machine(),
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table2.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'table2.json'}; wall {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
