"""``invprotect purify`` and ``invprotect train-defence``: apply or train a defence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.markup import escape

from invprotect._registry import UnknownNameError, UnknownPresetError
from invprotect.checkpoint import CONFIG_FILE, CheckpointError
from invprotect.cli.app import ThreadsOption, app
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, progress_bar
from invprotect.cli.shards import ShardOption, resolve_shard
from invprotect.data import default_cache_dir, load_image_set, train_test_split
from invprotect.defences import (
    COMDEFEND_PRESETS,
    TrainingStep,
    list_defences,
    train_comdefend,
)
from invprotect.files.purify import purify_tree
from invprotect.files.tree import TreeReport
from invprotect.sharding import Shard

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
    data: Annotated[
        Path, typer.Option(help="ImageFolder root: root/<class>/<image>, or train/ and test/.")
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write (safetensors + JSON).")],
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training set.")] = 8,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of split, initialisation, order, noise.")] = 0,
    size: Annotated[int, typer.Option(min=2, help="Fit every image to SIZE x SIZE.")] = 32,
    preset: Annotated[
        str, typer.Option(help=f"Architecture: {', '.join(COMDEFEND_PRESETS)}.")
    ] = "cpu",
    lr: Annotated[float, typer.Option(help="Initial Adam learning rate (cosine decay).")] = 1e-3,
    max_train_images: Annotated[
        int | None, typer.Option(min=1, help="Train on a seeded random subset of this many.")
    ] = None,
    threads: ThreadsOption = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Keep decoded images here for the next run.")
    ] = None,
    no_cache: Annotated[bool, typer.Option(help="Do not cache decoded images.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint.")] = False,
) -> None:
    """Train a learned defence (ComDefend) on clean images and save its checkpoint.

    Prints the reconstruction PSNR on the test split; use the checkpoint with
    ``invprotect purify SRC DST --defence comdefend:weights=OUT``.
    """
    if name not in TRAINABLE:
        raise fail(f"{name!r} is not a trainable defence; trainable: {', '.join(TRAINABLE)}")
    try:
        config = COMDEFEND_PRESETS[preset]
    except UnknownPresetError as error:
        raise fail(str(error)) from None
    if size % config.space_to_depth:
        raise fail(f"--size must be a multiple of {config.space_to_depth} for preset {preset!r}")
    if (out / CONFIG_FILE).is_file() and not overwrite:
        raise fail(f"{out} already holds a checkpoint; pass --overwrite to replace it")
    check_output_folder(out, "--out")
    try:
        train_index, test_index = train_test_split(data, seed=seed)
        cache = None if no_cache else (cache_dir or default_cache_dir())
        with progress_bar() as bar:
            task = bar.add_task("decoding", total=len(train_index) + len(test_index), status="")
            train, test = (
                load_image_set(index, size, cache, lambda n: bar.advance(task, n))
                for index in (train_index, test_index)
            )
    except ValueError as error:
        raise fail(str(error)) from None
    for bad in train.bad_files + test.bad_files:
        console.print(f"[yellow]skipped[/] {escape(bad.reason)}")
    if max_train_images is not None and max_train_images < len(train):
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        train = train.subset(keep[:max_train_images].sort().values)
    console.print(f"training {name} ({preset}) on {len(train)} images, testing on {len(test)}")
    with progress_bar() as bar:
        task = bar.add_task(name, total=None, status="")

        def show(step: TrainingStep) -> None:
            status = f"epoch {step.epoch + 1}/{epochs} loss {step.loss:.5f} PSNR {step.psnr:.2f} dB"
            bar.update(task, completed=step.step, total=step.total_steps, status=status)

        model = train_comdefend(
            train,
            test,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            config=config,
            lr=lr,
            progress=show,
        )
    model.metrics.update(
        {
            "data": str(data.resolve()),
            "size": size,
            "preset": preset,
            "bad_files": len(train.bad_files) + len(test.bad_files),
        }
    )
    model.save(out)
    psnr = model.metrics["test_psnr"]
    console.print(f"test PSNR {psnr:.2f} dB on {len(test)} images; saved to {out}")
    summary = {
        "defence": name,
        "test_psnr": psnr,
        "seconds": model.metrics["seconds"],
        "out": str(out),
    }
    typer.echo(json.dumps(summary))
