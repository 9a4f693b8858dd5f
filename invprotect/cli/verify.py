"""``invprotect verify``: measure a protector on real files, under defences, on unseen models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from invprotect.checkpoint import CheckpointError
from invprotect.cli.app import DeviceOption, ThreadsOption, app
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, progress_bar
from invprotect.cli.protector import PROTECTOR_HELP, load_protector_option
from invprotect.device import pick_device
from invprotect.evaluation import (
    VerifyConfig,
    sample_images,
    split_defence_specs,
    verify,
    write_report,
)
from invprotect.files.tree import paths_overlap
from invprotect.targets import Classifier


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


def _summary(report: dict) -> Table:
    table = Table(title=f"verify: {report['images']} images")
    table.add_column("model")
    table.add_column("defence")
    table.add_column("clean %", justify="right")
    table.add_column("protected %", justify="right")
    names = [*report["targets"], *report["unseen"]]
    for name in names:
        role = "target" if name in report["targets"] else "unseen"
        table.add_row(
            f"{name} ({role})",
            "none",
            f"{100 * report['A_ori'][name]:.1f}",
            f"{100 * report['A_prt'][name]:.1f}",
        )
        for spec, result in report["defences"].items():
            table.add_row(
                "",
                spec,
                f"{100 * result['clean'][name]:.1f}",
                f"{100 * result['protected'][name]:.1f}",
            )
    return table


@app.command("verify")
def verify_command(
    data: Annotated[
        Path, typer.Option(help="ImageFolder root: train/ and test/, or one folder split 9:1.")
    ],
    protector: Annotated[str, typer.Option(help=PROTECTOR_HELP)],
    targets: Annotated[
        list[Path], typer.Option(help="Target classifier checkpoints (repeat the option).")
    ],
    out: Annotated[Path, typer.Option(help="Report folder to write.")],
    unseen: Annotated[
        list[Path] | None,
        typer.Option(help="Classifiers the protector never saw (repeat the option)."),
    ] = None,
    defences: Annotated[
        str,
        typer.Option(
            help="'all' or comma-separated defence specs, e.g. jpeg:quality=50,grayscale."
        ),
    ] = "all",
    comdefend: Annotated[
        Path | None, typer.Option(help="ComDefend checkpoint: adds the comdefend defence.")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="Test images measured (class-balanced, seeded).")
    ] = 1000,
    dip_limit: Annotated[
        int, typer.Option(min=0, help="Images DIPDefend is applied to (about 1 s each).")
    ] = 16,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the choice of images and of defences.")] = 0,
    overwrite: Annotated[
        bool, typer.Option(help="Replace the files of an earlier run in OUT/files.")
    ] = False,
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
    target_models = _load_models(targets, taken, device)
    unseen_models = _load_models(unseen or [], taken, device)
    try:
        specs = split_defence_specs(defences, comdefend)
        config = VerifyConfig(
            limit=limit, batch_size=batch_size, defences=specs, dip_limit=dip_limit, seed=seed
        )
    except ValueError as error:
        raise fail(str(error)) from None
    if paths_overlap(data.resolve(), out.resolve()):
        raise fail(f"--out {out} must not be --data {data}, nor lie inside it (or contain it)")
    files = out / "files"
    if overwrite and files.is_dir():
        ours = {"originals", "protected", "recovered"}
        if not {path.name for path in files.iterdir()} <= ours:
            raise fail(f"{files} holds more than an earlier verify run wrote; delete it yourself")
        shutil.rmtree(files)
    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def show(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, status="")
            bar.update(tasks[stage], completed=done, total=total)

        try:
            report = verify(data, loaded, target_models, unseen_models, out, config, show)
        except (CheckpointError, ValueError) as error:
            raise fail(str(error)) from None
    report["protector"]["spec"] = protector
    paths = write_report(report, sample_images(report, out, loaded), out)
    for relative, reason in report["failed"]:
        console.print(f"[yellow]refused[/] {escape(relative)}: {escape(str(reason))}")
    if report["exact_rate"] < 1.0:
        console.print(f"[red]exact recovery {100 * report['exact_rate']:.1f}%[/] of the images")
    console.print(_summary(report))
    console.print(
        f"PSNR protected {report['P_prt']:.2f} dB, recovered {report['P_rev']:.2f} dB; "
        f"report: {paths['html']}"
    )
    summary = {
        key: report[key]
        for key in ("images", "A_ori", "A_prt", "A_rev", "P_prt", "P_rev", "exact_rate")
    }
    typer.echo(json.dumps({**summary, "out": str(out)}))
