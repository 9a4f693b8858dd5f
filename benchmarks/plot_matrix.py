"""Draw the pirate's clean-test accuracy per epoch of GPU matrix cells, one panel per family.

Reads ``matrix.json`` (curves keyed ``ROW|ARCH``) or ``poison-probe.json`` (cells of
`poison_probe.py` sets) from ``benchmarks/reference/cifar10-h200/results`` and writes a PNG.

Example::

    python benchmarks/plot_matrix.py benchmarks/reference/cifar10-h200/results/matrix.json \
        docs/assets/thief-h200.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure


def curves_of(path: Path) -> dict[str, list[float]]:
    """Curves keyed ``ROW|ARCH`` from either kind of file."""
    data = json.loads(path.read_text())
    if "cells" not in data:
        return data
    return {
        f"{cell['set']} {cell['defence'].split(':')[0]}|{cell['arch']}": cell["accuracy"]
        for cell in data["cells"]
    }


def draw(curves: dict[str, list[float]], title: str) -> Figure:
    """One panel per architecture, one line per row."""
    archs = sorted({key.split("|")[1] for key in curves})
    figure = Figure(figsize=(6.0 * len(archs), 4.6), dpi=100)
    for axes, arch in zip(figure.subplots(1, len(archs), squeeze=False)[0], archs, strict=True):
        axes.set_prop_cycle(color=colormaps["tab20"].colors)
        for key in sorted(k for k in curves if k.endswith(f"|{arch}")):
            row = key.split("|")[0]
            style = "-" if "originals" in row else "--" if "adversarial" in row else "-."
            axes.plot(range(1, len(curves[key]) + 1), curves[key], style, marker=".", label=row)
        axes.set(title=f"{title}: {arch}", xlabel="epoch", ylabel="clean-test accuracy")
        axes.set_ylim(0.0, 1.0)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="x-small", ncol=2)
    figure.tight_layout()
    return figure


def main() -> None:
    """Read, draw, write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--title", default="pirate, 50,000 images")
    args = parser.parse_args()
    draw(curves_of(args.source), args.title).savefig(args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
