"""``invprotect pirate``: what a thief gets from a protected training set (clean, train, score)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from invprotect._registry import UnknownNameError
from invprotect.checkpoint import CheckpointError
from invprotect.cli.app import app
from invprotect.cli.options import ArchOption, DeviceOption, NoCacheOption, ThreadsOption
from invprotect.cli.progress import console, fail, stages
from invprotect.data import default_cache_dir
from invprotect.defences import list_defences
from invprotect.training.adversarial import PGDConfig
from invprotect.training.pirate import LEARNED_INVERSE, NO_DEFENCE, run_pirate

SUMMARY_KEYS = ("defence", "arch", "final_accuracy", "peak_accuracy", "peak_epoch")
"""The figures of ``pirate.json`` that the command's JSON line repeats."""

_DEFENCE_HELP = (
    f"How the thief cleans: {NO_DEFENCE}, {LEARNED_INVERSE} (needs --leaked-originals) or "
    f"NAME[:key=value,...] of {', '.join(list_defences())}."
)
_TRAIN_HELP = "The protected training images: root/<class>/<image>."
_LEAKED_HELP = f"Originals of some training images ({LEARNED_INVERSE}), same layout."


@app.command("pirate")
def pirate(
    train: Annotated[Path, typer.Option(help=_TRAIN_HELP)],
    test: Annotated[Path, typer.Option(help="Clean test images, same class folders.")],
    out: Annotated[Path, typer.Option(help="Folder for pirate.json and accuracy.png.")],
    defence: Annotated[str, typer.Option("--defence", "-d", help=_DEFENCE_HELP)] = NO_DEFENCE,
    arch: ArchOption = "resnet_small",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (one-cycle SGD).")] = 15,
    adversarial: Annotated[
        bool, typer.Option("--adversarial", help="PGD adversarial training (8/255, 2/255; slow).")
    ] = False,
    pgd_steps: Annotated[int, typer.Option(min=1, help="PGD steps per batch.")] = 4,
    leaked_originals: Annotated[Path | None, typer.Option(help=_LEAKED_HELP)] = None,
    leaked_count: Annotated[
        int, typer.Option(min=1, help=f"Leaked pairs {LEARNED_INVERSE} trains on.")
    ] = 500,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per training step.")] = 256,
    size: Annotated[int | None, typer.Option(help="Fit every image to SIZE x SIZE.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of everything the pirate trains.")] = 0,
    no_cache: NoCacheOption = False,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
) -> None:
    """Clean a protected training set as a thief would, train a classifier on it, score it.

    Prints the clean-test accuracy after each epoch; writes OUT/pirate.json (final and
    peak accuracy, per-epoch figures) and OUT/accuracy.png.
    """
    with stages() as shown:
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
                progress=lambda e: shown.show(e.stage, e.done, e.total, e.status),
            )
        except (UnknownNameError, CheckpointError, ValueError) as error:
            raise fail(str(error)) from None
    for epoch, (accuracy, seconds) in enumerate(
        zip(report.accuracy, report.epoch_seconds, strict=True), 1
    ):
        console.print(f"epoch {epoch}: clean-test accuracy {accuracy:.4f} ({seconds:.0f} s)")
    figures = report.to_dict()
    summary = {key: figures[key] for key in SUMMARY_KEYS}
    typer.echo(json.dumps({**summary, "out": str(out)}))
