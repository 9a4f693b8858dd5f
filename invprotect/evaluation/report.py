"""The files of a verification report: JSON, Markdown, self-contained HTML, a picture grid, a chart.

`write_report` turns what `invprotect.evaluation.verify.verify` returned (and the
images of `invprotect.evaluation.verify.sample_images`) into::

    OUT/report.json    every figure, as measured
    OUT/report.md      the tables
    OUT/report.html    the tables and both pictures, in one file (images as base64 PNG)
    OUT/grid.png       original / protected / difference x10 / recovered / recovered after attack
    OUT/accuracy.png   accuracy of every model per defence, clean beside protected

Accuracies are printed in percent, PSNR in dB.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from invprotect.evaluation.verify_report import VerifyReport
from invprotect.files.atomic import atomic_write_bytes
from invprotect.pictures import DIFFERENCE_GAIN, amplified_difference, image_grid

_Table = tuple[str, list[str], list[list[str]]]  # title, column headers, rows of cells


def _grid_rows(images: dict[str, Tensor]) -> dict[str, Tensor]:
    """The rows of the grid: the given ones, with the amplified difference after "protected"."""
    rows: dict[str, Tensor] = {}
    for label, row in images.items():
        rows[label] = row
        if label == "protected" and "original" in images:
            difference = amplified_difference(row, images["original"])
            rows[f"difference x{DIFFERENCE_GAIN:g} around gray"] = difference
    return rows


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _models(report: VerifyReport) -> list[tuple[str, str]]:
    """``(name, role)`` of every measured model, targets first."""
    return [(name, "target") for name in report.targets] + [
        (name, "unseen") for name in report.unseen
    ]


def _accuracies(report: VerifyReport) -> dict[str, dict[str, float]]:
    """``A_ori``, ``A_prt`` and ``A_rev`` by their suffix."""
    return {
        "ori": report.accuracy_original,
        "prt": report.accuracy_protected,
        "rev": report.accuracy_recovered,
    }


def _tables(report: VerifyReport) -> list[_Table]:
    models = _models(report)
    accuracies = _accuracies(report)
    accuracy = (
        "Accuracy (%)",
        ["model", "role", "A_ori", "A_prt", "A_rev"],
        [
            [name, role, *(_percent(accuracies[s][name]) for s in ("ori", "prt", "rev"))]
            for name, role in models
        ],
    )
    quality = (
        "Image quality",
        ["images", "P_prt (dB)", "P_rev (dB)", "S_prt", "S_rev", "exact recovery (%)"],
        [
            [
                str(report.images),
                _number(report.psnr_protected),
                _number(report.psnr_recovered),
                _number(report.ssim_protected, 4),
                _number(report.ssim_recovered, 4),
                _percent(report.exact_rate),
            ]
        ],
    )
    headers = ["defence", "images"]
    for name, _ in models:
        headers += [f"{name} clean", f"{name} protected"]
    headers.append("recovered PSNR (dB)")
    rows = [
        [
            "none",
            str(report.images),
            *(_percent(accuracies[s][n]) for n, _ in models for s in ("ori", "prt")),
            _number(report.psnr_recovered),
        ]
    ]
    for spec, result in report.defences.items():
        cells = [spec, str(result.images)]
        for name, _ in models:
            cells += [_percent(result.clean[name]), _percent(result.protected[name])]
        rows.append([*cells, _number(result.recovered_psnr)])
    defences = ("Accuracy under defences (%): clean beside protected", headers, rows)
    return [accuracy, quality, defences]


def _facts(report: VerifyReport) -> list[tuple[str, str]]:
    protector = report.protector
    facts = [
        ("data", report.data or "n/a"),
        ("protector", str(protector.get("kind", "n/a"))),
        ("protector SHA-256", str(protector.get("sha256", "n/a"))),
        ("images", str(report.images)),
        ("wall time", f"{report.wall_seconds:.0f} s"),
    ]
    if report.failed:
        facts.append(("refused by the pipeline", str(len(report.failed))))
    return facts


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(headers), line(["---"] * len(headers)), *(line(row) for row in rows)]


def _markdown(report: VerifyReport, tables: list[_Table], grid_caption: str) -> str:
    lines = ["# invprotect verify report", ""]
    lines += [f"- {name}: {value}" for name, value in _facts(report)]
    for title, headers, rows in tables:
        lines += ["", f"## {title}", "", *_markdown_table(headers, rows)]
    lines += ["", "## Pictures", "", "![grid](grid.png)", "", grid_caption, ""]
    lines += ["![accuracy per defence](accuracy.png)", ""]
    return "\n".join(lines)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html(
    report: VerifyReport, tables: list[_Table], grid_caption: str, pictures: dict[str, bytes]
) -> str:
    escape = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>invprotect verify report</title>',
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse;margin:0.5em 0}"
        "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:right}"
        "th:first-child,td:first-child{text-align:left}"
        "img{image-rendering:pixelated;max-width:100%}</style></head><body>",
        "<h1>invprotect verify report</h1>",
        "<ul>",
        *(f"<li>{escape(name)}: {escape(value)}</li>" for name, value in _facts(report)),
        "</ul>",
    ]
    for title, headers, rows in tables:
        parts += [f"<h2>{escape(title)}</h2>", "<table>"]
        parts.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts += [
        "<h2>Pictures</h2>",
        f'<img alt="grid" src="{_data_uri(pictures["grid"])}">',
        f"<p>{escape(grid_caption)}</p>",
        f'<img alt="accuracy per defence" src="{_data_uri(pictures["accuracy"])}">',
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _accuracy_chart(report: VerifyReport) -> bytes:
    """Bars of clean and protected accuracy per defence, one panel per model, as PNG."""
    models = _models(report)
    groups = ["none", *report.defences]
    figure = Figure(figsize=(max(6.0, 1.1 * len(groups) + 1.5), 2.8 * len(models)), dpi=100)
    axes = figure.subplots(len(models), 1, squeeze=False)[:, 0]
    positions = np.arange(len(groups))
    for axis, (name, role) in zip(axes, models, strict=True):
        results = report.defences.values()
        clean = [report.accuracy_original[name]] + [d.clean[name] for d in results]
        protected = [report.accuracy_protected[name]] + [d.protected[name] for d in results]
        axis.bar(positions - 0.2, [100 * v for v in clean], 0.4, label="clean", color="#9ab")
        axis.bar(
            positions + 0.2, [100 * v for v in protected], 0.4, label="protected", color="#c43"
        )
        axis.set_title(f"{role}: {name}", fontsize=10)
        axis.set_ylabel("accuracy (%)")
        axis.set_ylim(0, 100)
        axis.set_xticks(positions, groups, rotation=30, ha="right", fontsize=8)
        axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(
    report: VerifyReport, images: dict[str, Tensor], out: Path
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``report.html``, ``grid.png`` and ``accuracy.png``.

    Args:
        report: What `invprotect.evaluation.verify.verify` returned (``report.json`` is
            its `VerifyReport.to_dict`).
        images: Rows of the picture grid by label, in order, float ``(N, 3, H, W)`` in
            ``[0, 1]`` of one shape (`invprotect.evaluation.verify.sample_images`); a
            row of the difference amplified 10x around gray follows ``"protected"``
            when ``"original"`` is given.
        out: Folder to write into (created if needed).

    Returns:
        The path of each file written, by kind: ``json``, ``markdown``, ``html``,
        ``grid``, ``accuracy``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = _grid_rows(images)
    grid = io.BytesIO()
    image_grid(list(rows.values())).save(grid, format="PNG")
    pictures = {"grid": grid.getvalue(), "accuracy": _accuracy_chart(report)}
    caption = "Rows, top to bottom: " + "; ".join(rows) + "."
    tables = _tables(report)
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
        "grid": out / "grid.png",
        "accuracy": out / "accuracy.png",
    }
    contents = {
        "json": (json.dumps(report.to_dict(), indent=2) + "\n").encode(),
        "markdown": _markdown(report, tables, caption).encode(),
        "html": _html(report, tables, caption, pictures).encode(),
        "grid": pictures["grid"],
        "accuracy": pictures["accuracy"],
    }
    for kind, path in paths.items():
        atomic_write_bytes(path, contents[kind])
    return paths
