"""``invprotect purify`` and ``invprotect train-defence``: apply or train a defence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from invprotect._registry import UnknownNameError
from invprotect.checkpoint import CheckpointError
from invprotect.cli.app import app
from invprotect.cli.options import (
    CacheDirOption,
    CacheOffOption,
    CheckpointOutOption,
    EpochsOption,
    MaxTrainImagesOption,
    StepBatchOption,
    ThreadsOption,
    TrainDataOption,
)
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, progress_bar, stages
from invprotect.cli.shards import ShardOption, resolve_shard
from invprotect.data import default_cache_dir
from invprotect.defences import (
    COMDEFEND_PRESETS,
    list_defences,
)
from invprotect.files.purify import purify_tree
from invprotect.files.tree import TreeReport
from invprotect.sharding import Shard
from invprotect.training import ComDefendRunConfig, run_comdefend_training

TRAINABLE = tuple(list_defences(tag="trainable"))
"""Defences that ``train-defence`` can train."""


@app.command("purify")
def purify(
    src: Annotated[
        Path, typer.Argument(help="An image file, or a folder of images (searched recursively).")
    ],
    dst: Annotated[
        Path,
        typer.Argument(help="Output folder (relative paths kept, PNG); a .png path for one file."),
    ],
    defence: Annotated[
        str,
        typer.Option(
            "--defence",
            "-d",
            help=f"NAME[:key=value,...], e.g. jpeg:quality=50; names: {', '.join(list_defences())}",
        ),
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="Images per defence call.")] = 64,
    seed: Annotated[
        int, typer.Option(help="Seed of random defences (mixed with each file's relative path).")
    ] = 0,
    overwrite: Annotated[bool, typer.Option(help="Recompute outputs that already exist.")] = False,
    threads: ThreadsOption = None,
    shard: ShardOption = None,
) -> None:
    """Apply a defence to images, as a thief would before training on them.

    Writes PNG files (lossless) to DST, keeping the relative paths of SRC; SRC is never
    modified. A run started again skips the outputs that DST/manifest.jsonl, the outputs
    and their sources agree on. Unreadable files are reported and skipped (exit code 1).
    With --shard (or under torchrun) only one shard's files, with the same bytes.
    """
    shard = resolve_shard(shard)
    single_png = src.is_file() and dst.suffix.lower() == ".png"
    check_output_folder(dst.parent if single_png else dst, "DST")
    label = defence.split(":")[0] + ("" if shard is None else f" {shard}")
    try:
        with progress_bar() as bar:
            task = bar.add_task(label, total=None, status="")
            report = purify_tree(
                *(src, dst, defence, batch_size, seed, overwrite),
                progress=lambda n: bar.advance(task, n),
                started=lambda n: bar.update(task, total=n),
                shard=shard,
            )
    except (UnknownNameError, CheckpointError, ValueError) as error:
        raise fail(str(error)) from None
    _print_purified(report, {"defence": defence}, dst, shard)


def _print_purified(
    report: TreeReport, summary: dict[str, str | int], dst: Path, shard: Shard | None
) -> None:
    """Print each failure and warning, then the summary line; exit 1 if a file failed."""
    for relative, reason in report.failed:
        console.print(f"[yellow]failed[/] {escape(relative)}: {escape(str(reason))}")
    for message in report.warnings:
        console.print(f"[yellow]warning[/] {escape(message)}")
    summary.update(
        written=report.written,
        skipped_existing=report.skipped,
        failed=len(report.failed),
        dst=str(dst),
    )
    if shard is not None:
        summary["shard"] = str(shard)
    typer.echo(json.dumps(summary))
    if report.failed:
        raise typer.Exit(1)


@app.command("train-defence")
def train_defence(
    name: Annotated[str, typer.Argument(help=f"Defence to train: {', '.join(TRAINABLE)}.")],
    data: TrainDataOption,
    out: CheckpointOutOption,
    epochs: EpochsOption = 8,
    batch_size: StepBatchOption = 32,
    seed: Annotated[int, typer.Option(help="Seed of split, initialisation, order, noise.")] = 0,
    size: Annotated[int, typer.Option(min=2, help="Fit every image to SIZE x SIZE.")] = 32,
    preset: Annotated[
        str, typer.Option(help=f"Architecture: {', '.join(COMDEFEND_PRESETS)}.")
    ] = "cpu",
    lr: Annotated[float, typer.Option(help="Initial Adam learning rate (cosine decay).")] = 1e-3,
    max_train_images: MaxTrainImagesOption = None,
    threads: ThreadsOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: CacheOffOption = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint.")] = False,
) -> None:
    """Train a learned defence (ComDefend) on clean images and save its checkpoint.

    Prints the reconstruction PSNR on the test split; use the checkpoint with
    ``invprotect purify SRC DST --defence comdefend:weights=OUT``.
    """
    if name not in TRAINABLE:
        raise fail(f"{name!r} is not a trainable defence; trainable: {', '.join(TRAINABLE)}")
    try:
        config = ComDefendRunConfig(
            data,
            out,
            *(preset, size, epochs, batch_size, lr, seed, max_train_images),
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
            overwrite=overwrite,
        )
    except ValueError as error:
        raise fail(str(error)) from None
    check_output_folder(out, "--out")
    with stages() as shown:
        try:
            model = run_comdefend_training(config, shown.listener)
        except ValueError as error:
            raise fail(str(error)) from None
    psnr, tested = model.metrics["test_psnr"], model.metrics["test_images"]
    console.print(f"test PSNR {psnr:.2f} dB on {tested} images; saved to {out}")
    summary = {"defence": name, "test_psnr": psnr, "seconds": model.metrics["seconds"]}
    typer.echo(json.dumps({**summary, "out": str(out)}))
