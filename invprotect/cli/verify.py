"""``invprotect verify``: measure a protector on real files, under defences, on unseen models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from invprotect.checkpoint import CheckpointError
from invprotect.cli.app import app
from invprotect.cli.options import (
    PROTECTOR_HELP,
    DeviceOption,
    ThreadsOption,
    load_protector_option,
)
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, stages
from invprotect.device import pick_device
from invprotect.evaluation import (
    VerifyConfig,
    VerifyReport,
    remove_earlier_files,
    sample_images,
    split_defence_specs,
    verify,
    write_report,
)
from invprotect.files.tree import paths_overlap
from invprotect.targets import Classifier

SUMMARY_KEYS = ("images", "A_ori", "A_prt", "A_rev", "P_prt", "P_rev", "exact_rate")
"""The figures of ``report.json`` that the command's JSON line repeats."""

_HELP = {
    "data": "ImageFolder root: train/ and test/, or one folder split 9:1.",
    "targets": "Target classifier checkpoints (repeat the option).",
    "unseen": "Classifiers the protector never saw (repeat the option).",
    "defences": "'all' or comma-separated defence specs, e.g. jpeg:quality=50,grayscale.",
    "comdefend": "ComDefend checkpoint: adds the comdefend defence.",
    "limit": "Test images measured (class-balanced, seeded).",
    "dip_limit": "Images DIPDefend is applied to (about 1 s each).",
    "seed": "Seed of the choice of images and of defences.",
    "overwrite": "Replace the files of an earlier run in OUT/files.",
}


def _load_models(paths: list[Path], taken: set[str], device: str) -> dict[str, Classifier]:
    """Classifiers by name: the checkpoint folder's name, made unique with ``-2``, ``-3``, ..."""
    models = {}
    for path in paths:
        try:
            model = Classifier.load(path, pick_device(device))
        except (CheckpointError, ValueError) as error:
            raise fail(f"cannot load the classifier {path}: {error}") from None
        name, number = path.resolve().name or "model", 2
        while name in taken:
            name, number = f"{path.resolve().name}-{number}", number + 1
        taken.add(name)
        models[name] = model
    return models


def _summary(report: VerifyReport) -> Table:
    table = Table(title=f"verify: {report.images} images")
    table.add_column("model")
    table.add_column("defence")
    table.add_column("clean %", justify="right")
    table.add_column("protected %", justify="right")
    for name in report.models:
        role = "target" if name in report.targets else "unseen"
        table.add_row(
            f"{name} ({role})",
            "none",
            f"{100 * report.accuracy_original[name]:.1f}",
            f"{100 * report.accuracy_protected[name]:.1f}",
        )
        for spec, result in report.defences.items():
            table.add_row(
                "", spec, f"{100 * result.clean[name]:.1f}", f"{100 * result.protected[name]:.1f}"
            )
    return table


def _print_report(report: VerifyReport, html: Path) -> None:
    for relative, reason in report.failed:
        console.print(f"[yellow]refused[/] {escape(relative)}: {escape(str(reason))}")
    if report.exact_rate < 1.0:
        console.print(f"[red]exact recovery {100 * report.exact_rate:.1f}%[/] of the images")
    console.print(_summary(report))
    console.print(
        f"PSNR protected {report.psnr_protected:.2f} dB, recovered "
        f"{report.psnr_recovered:.2f} dB; report: {html}"
    )


def _checked_config(
    data: Path, out: Path, defences: str, comdefend: Path | None, overwrite: bool, **sizes: int
) -> VerifyConfig:
    """The settings, with OUT checked against DATA and an earlier run's files removed."""
    try:
        config = VerifyConfig(defences=split_defence_specs(defences, comdefend), **sizes)
        if paths_overlap(data.resolve(), out.resolve()):
            raise ValueError(
                f"--out {out} must not be --data {data}, nor lie inside it (or contain it)"
            )
        if overwrite:
            remove_earlier_files(out)
    except ValueError as error:
        raise fail(str(error)) from None
    return config


@app.command("verify")
def verify_command(
    data: Annotated[Path, typer.Option(help=_HELP["data"])],
    protector: Annotated[str, typer.Option(help=PROTECTOR_HELP)],
    targets: Annotated[list[Path], typer.Option(help=_HELP["targets"])],
    out: Annotated[Path, typer.Option(help="Report folder to write.")],
    unseen: Annotated[list[Path] | None, typer.Option(help=_HELP["unseen"])] = None,
    defences: Annotated[str, typer.Option(help=_HELP["defences"])] = "all",
    comdefend: Annotated[Path | None, typer.Option(help=_HELP["comdefend"])] = None,
    limit: Annotated[int, typer.Option(min=1, help=_HELP["limit"])] = 1000,
    dip_limit: Annotated[int, typer.Option(min=0, help=_HELP["dip_limit"])] = 16,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    seed: Annotated[int, typer.Option(help=_HELP["seed"])] = 0,
    overwrite: Annotated[bool, typer.Option(help=_HELP["overwrite"])] = False,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
) -> None:
    """Protect and recover test images, then measure accuracy, quality and defences.

    Writes OUT/report.json, report.md, report.html (self-contained), grid.png and
    accuracy.png, and the files it measured under OUT/files.
    """
    if not data.is_dir():
        raise fail(f"--data {data} is not a folder")
    check_output_folder(out, "--out")
    loaded = load_protector_option(protector, device, targets, protecting=True)
    taken: set[str] = set()
    models = _load_models(targets, taken, device), _load_models(unseen or [], taken, device)
    sizes = {"limit": limit, "batch_size": batch_size, "dip_limit": dip_limit, "seed": seed}
    config = _checked_config(data, out, defences, comdefend, overwrite, **sizes)
    with stages() as shown:
        try:
            report = verify(data, loaded, *models, out, config, shown.show)
        except (CheckpointError, ValueError) as error:
            raise fail(str(error)) from None
    report = replace(report, protector={**report.protector, "spec": protector})
    paths = write_report(report, sample_images(report, out, loaded), out)
    _print_report(report, paths["html"])
    figures = report.to_dict()
    typer.echo(json.dumps({**{key: figures[key] for key in SUMMARY_KEYS}, "out": str(out)}))
