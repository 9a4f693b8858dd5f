"""``invprotect pirate``: what a thief gets from a protected training set (clean, train, score)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from invprotect._registry import UnknownNameError
from invprotect.checkpoint import CheckpointError
from invprotect.cli.app import DeviceOption, ThreadsOption, app
from invprotect.cli.progress import console, fail, progress_bar
from invprotect.data import default_cache_dir
from invprotect.defences import list_defences
from invprotect.targets import list_archs
from invprotect.training.adversarial import PGDConfig
from invprotect.training.pirate import LEARNED_INVERSE, NO_DEFENCE, PirateProgress, run_pirate


@app.command("pirate")
def pirate(
    train: Annotated[
        Path, typer.Option(help="The protected training images: root/<class>/<image>.")
    ],
    test: Annotated[Path, typer.Option(help="Clean test images, same class folders.")],
    out: Annotated[Path, typer.Option(help="Folder for pirate.json and accuracy.png.")],
    defence: Annotated[
        str,
        typer.Option(
            "--defence",
            "-d",
            help=f"How the thief cleans: {NO_DEFENCE}, {LEARNED_INVERSE} (needs "
            f"--leaked-originals) or NAME[:key=value,...] of {', '.join(list_defences())}.",
        ),
    ] = NO_DEFENCE,
    arch: Annotated[str, typer.Option(help=f"Architecture: {', '.join(list_archs())}.")] = (
        "resnet_small"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (one-cycle SGD).")] = 15,
    adversarial: Annotated[
        bool, typer.Option("--adversarial", help="PGD adversarial training (8/255, 2/255; slow).")
    ] = False,
    pgd_steps: Annotated[int, typer.Option(min=1, help="PGD steps per batch.")] = 4,
    leaked_originals: Annotated[
        Path | None,
        typer.Option(help=f"Originals of some training images ({LEARNED_INVERSE}), same layout."),
    ] = None,
    leaked_count: Annotated[
        int, typer.Option(min=1, help=f"Leaked pairs {LEARNED_INVERSE} trains on.")
    ] = 500,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per training step.")] = 256,
    size: Annotated[int | None, typer.Option(help="Fit every image to SIZE x SIZE.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of everything the pirate trains.")] = 0,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not cache decoded images.")
    ] = False,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
) -> None:
    """Clean a protected training set as a thief would, train a classifier on it, score it.

    Prints the clean-test accuracy after each epoch; writes OUT/pirate.json (final and
    peak accuracy, per-epoch figures) and OUT/accuracy.png.
    """
    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def show(event: PirateProgress) -> None:
            if event.stage not in tasks:
                tasks[event.stage] = bar.add_task(event.stage, total=event.total, status="")
            bar.update(tasks[event.stage], completed=event.done, status=event.status)

        try:
            report = run_pirate(
                *(train, test, defence, arch, epochs),
                out=out,
                leaked_originals=leaked_originals,
                size=size,
                cache_dir=None if no_cache else default_cache_dir(),
                adversarial=PGDConfig(steps=pgd_steps) if adversarial else None,
                leaked_count=leaked_count,
                batch_size=batch_size,
                seed=seed,
                device=device,
                progress=show,
            )
        except (UnknownNameError, CheckpointError, ValueError) as error:
            raise fail(str(error)) from None
    for epoch, (accuracy, seconds) in enumerate(
        zip(report.accuracy, report.epoch_seconds, strict=True), 1
    ):
        console.print(f"epoch {epoch}: clean-test accuracy {accuracy:.4f} ({seconds:.0f} s)")
    summary = {
        key: report.to_dict()[key]
        for key in ("defence", "arch", "final_accuracy", "peak_accuracy", "peak_epoch")
    }
    typer.echo(json.dumps({**summary, "out": str(out)}))
