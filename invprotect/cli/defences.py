"""``invprotect purify`` and ``invprotect train-defence``: apply or train a defence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    Defence,
    TrainingStep,
    create_defence,
    list_defences,
    parse_defence_spec,
    sample_generators,
    train_comdefend,
)
from invprotect.files.atomic import atomic_write_bytes
from invprotect.files.images import IMAGE_SUFFIXES, BadImageError, read_rgb
from invprotect.files.png import encode_png
from invprotect.files.tree import Job, collect_jobs, paths_overlap

MANIFEST = ".invprotect-purify.json"
"""File in the output folder recording which defence produced its images."""

TRAINABLE = tuple(list_defences(tag="trainable"))
"""Defences that ``train-defence`` can train."""


def _canonical_spec(name: str, kwargs: dict[str, Any]) -> str:
    items = ",".join(f"{key}={kwargs[key]!r}" for key in sorted(kwargs))
    return f"{name}:{items}" if items else name


def _check_manifest(root: Path, record: dict[str, Any], overwrite: bool) -> None:
    path = root / MANIFEST
    if path.is_file() and not overwrite:
        try:
            previous = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            previous = None
        if previous != record:
            raise fail(
                f"{root} holds images purified with different settings ({path}: {previous}); "
                "choose another DST, or pass --overwrite to recompute every image"
            )
    atomic_write_bytes(path, (json.dumps(record, sort_keys=True) + "\n").encode())


def _purify_batch(
    defence: Defence, jobs: list[Job], seed: int, failures: list[tuple[str, str]]
) -> int:
    """Read, purify and write one batch; returns how many images were written."""
    loaded: dict[tuple[int, int], list[tuple[Job, torch.Tensor]]] = {}
    for job in jobs:
        try:
            image = read_rgb(job.source)
        except BadImageError as error:
            failures.append((job.relative, str(error)))
            continue
        loaded.setdefault(tuple(image.shape[-2:]), []).append((job, image))
    written = 0
    for group in loaded.values():
        group_jobs = [job for job, _ in group]
        images = torch.stack([image for _, image in group]).float().div(255.0)
        generator = sample_generators(seed, [job.relative for job in group_jobs])
        try:
            purified = defence(images, generator if defence.stochastic else None)
        except (RuntimeError, ValueError) as error:
            failures.extend((job.relative, f"defence failed: {error}") for job in group_jobs)
            continue
        as_bytes = purified.mul(255.0).round().clamp(0, 255).to(torch.uint8).cpu()
        for job, image in zip(group_jobs, as_bytes, strict=True):
            try:
                atomic_write_bytes(
                    job.output, encode_png(image.permute(1, 2, 0).contiguous().numpy())
                )
            except OSError as error:
                failures.append((job.relative, f"cannot write {job.output}: {error}"))
                continue
            written += 1
    return written


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
    modified. Outputs that already exist are skipped, so an interrupted run resumes
    where it stopped. Unreadable files are reported and skipped; the exit code is then 1.
    With --shard (or under torchrun) only one shard's files, with the same bytes.
    """
    shard = resolve_shard(shard)
    try:
        name, kwargs = parse_defence_spec(defence)
        model = create_defence(name, **kwargs)
    except (UnknownNameError, CheckpointError, ValueError) as error:
        raise fail(str(error)) from None
    if not src.exists():
        raise fail(f"SRC {src} does not exist")
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if src.is_dir() and paths_overlap(src_abs, dst_abs):
        raise fail(
            f"DST {dst} and SRC {src} overlap (equal, or one inside the other); "
            "choose a DST outside SRC so that SRC is never modified"
        )
    single_png = src.is_file() and dst.suffix.lower() == ".png"
    check_output_folder(dst.parent if single_png else dst, "DST")
    jobs, failures = collect_jobs(src_abs, dst_abs)
    if src.is_file() and jobs[0].output == src_abs:
        raise fail(f"the output {jobs[0].output} would replace SRC; choose another DST")
    if not jobs and not failures:
        raise fail(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {src}")
    if shard is not None:
        jobs = [job for job in jobs if shard.owns(job.relative)]
        failures = [(relative, reason) for relative, reason in failures if shard.owns(relative)]
    if src.is_dir():
        record = {"defence": _canonical_spec(name, kwargs)}
        if model.stochastic:
            record["seed"] = seed
        _check_manifest(dst_abs, record, overwrite)
    todo = [job for job in jobs if overwrite or not job.output.exists()]
    skipped = len(jobs) - len(todo)
    written = 0
    with progress_bar() as bar:
        label = name if shard is None else f"{name} {shard}"
        task = bar.add_task(label, total=len(todo), status="")
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            written += _purify_batch(model, batch, seed, failures)
            status = f"[red]{len(failures)} failed[/]" if failures else ""
            bar.update(task, advance=len(batch), status=status)
    for relative, reason in failures:
        console.print(f"[yellow]failed[/] {escape(relative)}: {escape(str(reason))}")
    summary = {
        "defence": defence,
        "written": written,
        "skipped_existing": skipped,
        "failed": len(failures),
        "dst": str(dst),
    }
    if shard is not None:
        summary["shard"] = str(shard)
    typer.echo(json.dumps(summary))
    if failures:
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
