"""``invprotect train``, ``protect`` and ``recover``: the protector's life cycle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.markup import escape

from invprotect import distributed
from invprotect._registry import UnknownNameError, UnknownPresetError
from invprotect.attacks import AttackLayer
from invprotect.checkpoint import CONFIG_FILE, CheckpointError
from invprotect.cli.app import DeviceOption, ThreadsOption, app
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, progress_bar
from invprotect.cli.shards import ShardOption, resolve_shard
from invprotect.cli.targets import load_split, training_processes
from invprotect.data import default_cache_dir
from invprotect.device import pick_device
from invprotect.files.manifest import MANIFEST, manifest_part, read_manifest
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.files.tree import TreeReport, collect_jobs
from invprotect.models import RAEG, RAEG_PRESETS
from invprotect.models.protector import Protector
from invprotect.protectors import load_protector
from invprotect.sharding import Shard, worker_device
from invprotect.targets import Classifier, Ensemble
from invprotect.training.protector import (
    ProtectorEvent,
    ProtectorTrainingConfig,
    held_psnr,
    perceptual_loss,
    train_protector,
)

STATE_DIR = "train-state"
"""Sub-directory of ``--out`` holding the training state (for resuming)."""


PROTECTOR_HELP = (
    "Protector: a checkpoint (the key), or a baseline: rae-igsm, rae-cw, rit-igsm, "
    "or a saved RAE/RIT."
)
TARGETS_HELP = "Classifier checkpoints a baseline attacks to protect (repeat the option)."


def load_protector_option(
    spec: str, device: str, targets: list[Path] | None, protecting: bool
) -> Protector:
    """The protector of ``--protector``; a baseline must have ``--targets`` to protect."""
    try:
        protector = load_protector(spec, pick_device(device), targets or [])
    except (CheckpointError, ValueError) as error:
        raise fail(f"cannot load the protector {spec}: {error}") from None
    if protecting and not protector.can_protect:
        raise fail(f"{spec} protects by attacking classifiers: pass them with --targets")
    return protector


@app.command("train")
def train(
    data: Annotated[Path, typer.Option(help="ImageFolder root of the images to protect.")],
    targets: Annotated[list[Path], typer.Option(help="Target classifier checkpoints.")],
    out: Annotated[Path, typer.Option(help="Protector checkpoint directory to write (the key).")],
    preset: Annotated[str, typer.Option(help=f"One of {', '.join(RAEG_PRESETS)}.")] = "cpu-32",
    target_psnr: Annotated[
        float, typer.Option(help="Wanted PSNR of protected images (dB).")
    ] = 30.0,
    steps: Annotated[int, typer.Option(min=1, help="Generator updates.")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step.")] = 32,
    lr: Annotated[
        float, typer.Option(help="Starting Adam learning rate (cosine decay).")
    ] = ProtectorTrainingConfig.lr,
    perceptual: Annotated[
        str,
        typer.Option(
            help="Perceptual loss: 'ssim', or a classifier checkpoint whose first "
            "convolutions' activations are compared."
        ),
    ] = "ssim",
    attacks: Annotated[
        str | None,
        typer.Option(
            help="Attack mix of training as 'name=weight,...' (default: no attack, noise, "
            "blur, median filter, resize, crop and JPEG equally)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, batches and attacks.")] = 0,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
) -> None:
    """Train a protector against target classifiers; resumable (rerun the same command).

    Under ``torchrun --nproc-per-node N`` each process trains on its share of every
    batch of BATCH_SIZE images (see docs/scaling.md); rank 0 writes the key.
    """
    try:
        RAEG_PRESETS[preset]
    except UnknownPresetError as error:
        raise fail(str(error)) from None
    if (out / CONFIG_FILE).is_file():
        console.print(f"{out} already holds a trained protector; delete it to train again")
        raise typer.Exit(0)
    check_output_folder(out, "--out")
    with training_processes(device) as target_device:
        try:
            members = [Classifier.load(path, target_device) for path in targets]
            ensemble = Ensemble(members)
            config = ProtectorTrainingConfig(
                steps=steps,
                batch_size=batch_size,
                lr=lr,
                target_psnr=target_psnr,
                perceptual=perceptual,
                attacks=_parse_attacks(attacks),
                seed=seed,
            )
            AttackLayer(config.attacks)  # refuse unknown attacks before decoding the data
            perceptual_loss(perceptual, target_device)  # ... and an unusable perceptual network
            distributed.share(batch_size)  # ... and a batch too small for the processes
            size = RAEG_PRESETS[preset].image_size
            with distributed.main_first():  # rank 0 fills the decoding cache first
                train_set, _ = load_split(data, size, default_cache_dir(), "decoding")
        except (UnknownNameError, CheckpointError, ValueError) as error:
            raise fail(str(error)) from None
        if train_set.classes != members[0].classes:
            raise fail(
                f"the targets know classes {members[0].classes}, the data {train_set.classes}"
            )
        torch.manual_seed(seed)
        raeg = RAEG.from_preset(preset).to(target_device)
        with progress_bar() as bar:
            task = bar.add_task("protector", total=steps, status="")

            def show(event: ProtectorEvent) -> None:
                status = (
                    f"loss {event.loss:.4f} PSNR {event.smoothed_psnr:.1f} dB "
                    f"fooled {event.fooling_rate:.2f} "
                    f"(attacked {event.attacked_fooling_rate:.2f}) "
                    f"recovered acc {event.recovered_accuracy:.2f}"
                )
                bar.update(task, completed=event.step, status=status)

            try:
                events = train_protector(raeg, ensemble, train_set, config, out / STATE_DIR, show)
            except ValueError as error:
                raise fail(str(error)) from None
        processes = distributed.world_size()
        if not distributed.is_main():
            return
    last = events[-50:]
    raeg.metadata = {
        "data": str(data.resolve()),
        "targets": [str(p.resolve()) for p in targets],
        "classes": train_set.classes,
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "processes": processes,
        },
        "attacks": config.attacks,
        "perceptual": perceptual,
        "target_psnr": target_psnr,
        "train_psnr": held_psnr(raeg, train_set, seed=seed),
        "final_fooling_rate": sum(e.fooling_rate for e in last) / len(last) if last else None,
    }
    raeg.save(out)
    typer.echo(
        json.dumps(
            {"out": str(out), **{k: raeg.metadata[k] for k in ("train_psnr", "final_fooling_rate")}}
        )
    )


def _parse_attacks(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    mix = {}
    for item in text.split(","):
        name, _, weight = item.partition("=")
        try:
            mix[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"attack weight of {name!r} is not a number: {weight!r}") from None
    return mix


def _check_destination(src: Path, dst: Path) -> None:
    """Refuse a missing SRC and a DST that cannot be a folder we write to, before any work."""
    if not src.exists():
        raise fail(f"SRC {src} does not exist")
    single_png = src.is_file() and dst.suffix.lower() == ".png"
    if single_png and dst.is_dir():
        raise fail(f"DST {dst} is a folder; give a new file name, or the folder without .png")
    check_output_folder(dst.parent if single_png else dst, "DST")


def _entries(manifest: Path, shard: Shard | None = None) -> dict[str, dict]:
    """The manifest's entries (``shard``'s only, its part's too); none when unreadable.

    A shard's entries move from its part to the manifest when the part is folded in, so
    the part is read first: what it held is then in the manifest, unless still in the part,
    whose entries are the newer ones.
    """
    keep = None if shard is None else shard.owns
    part = {}
    if shard is not None and shard.count > 1:
        part = _readable(manifest.parent / manifest_part(shard), keep)
    return {**_readable(manifest, keep), **part}


def _readable(path: Path, keep: Callable[[str], bool] | None) -> dict[str, dict]:
    try:
        return read_manifest(path, keep=keep)
    except ValueError:
        return {}  # the pipeline reports it


def _means(
    manifest: Path, before: dict[str, dict], shard: Shard | None = None
) -> dict[str, float | None]:
    """Mean ``psnr`` and ``ssim`` of the manifest entries this run wrote (``None``: none had it)."""
    written = [
        entry for path, entry in _entries(manifest, shard).items() if before.get(path) != entry
    ]
    means: dict[str, float | None] = {}
    for key in ("psnr", "ssim"):
        values = [e[key] for e in written if isinstance(e.get(key), int | float)]
        means[key] = sum(values) / len(values) if values else None
    return means


def _run_tree(
    command: str,
    src: Path,
    dst: Path,
    protector: str,
    targets: list[Path] | None,
    batch_size: int,
    device: str,
    shard: Shard | None,
) -> TreeReport:
    shard = resolve_shard(shard)
    _check_destination(src, dst)
    try:
        device = str(worker_device(pick_device(device)))
    except ValueError as error:
        raise fail(str(error)) from None
    loaded = load_protector_option(protector, device, targets, command == "protect")
    jobs, _ = collect_jobs(src.resolve(), dst.resolve(), shard)
    root = dst.parent if src.is_file() and dst.suffix.lower() == ".png" else dst
    manifest = root / MANIFEST
    before: dict[str, dict] = {}
    if command == "protect":
        before = _entries(manifest, shard)
    work = protect_tree if command == "protect" else recover_tree
    label = command if shard is None else f"{command} {shard}"
    try:
        with progress_bar() as bar:
            task = bar.add_task(label, total=len(jobs), status="")
            report = work(src, dst, loaded, batch_size, lambda n: bar.advance(task, n), shard)
    except ValueError as error:
        raise fail(str(error)) from None
    for relative, reason in report.failed:
        console.print(f"[yellow]failed[/] {escape(relative)}: {escape(str(reason))}")
    for relative in report.altered:
        console.print(f"[yellow]altered[/] {escape(relative)}: recovered approximately")
    for relative in report.approximate:
        console.print(
            f"[yellow]approximate[/] {escape(relative)}: this protector cannot restore it exactly"
        )
    for relative in report.mismatched:
        console.print(f"[red]mismatch[/] {escape(relative)}: not the recorded original")
    for relative, reason in report.skipped_files:
        console.print(f"[yellow]skipped[/] {escape(relative)}: {escape(str(reason))}")
    for message in report.warnings:
        console.print(f"[yellow]warning[/] {escape(message)}")
    summary: dict[str, int | float | str | None] = {
        "written": report.written,
        "skipped": report.skipped,
        "failed": len(report.failed),
        "altered": len(report.altered),
        "approximate": len(report.approximate),
        "mismatched": len(report.mismatched),
        "skipped_files": len(report.skipped_files),
        "warnings": len(report.warnings),
    }
    if shard is not None:
        summary["shard"] = str(shard)
    if command == "protect":
        means = _means(manifest, before, shard)
        quality = ""
        for key, name, unit, digits in (("psnr", "PSNR", " dB", 2), ("ssim", "SSIM", "", 3)):
            value = means[key]
            summary[f"mean_{key}"] = None if value is None else round(value, digits + 1)
            quality += "" if value is None else f", mean {name} {value:.{digits}f}{unit}"
        console.print(
            f"protected {report.written} files{quality} (protected vs original); "
            f"{report.skipped} already done, {len(report.failed)} failed"
        )
    typer.echo(json.dumps(summary))
    if not report.ok:
        raise typer.Exit(1)
    return report


@app.command("protect")
def protect(
    src: Annotated[
        Path, typer.Argument(metavar="SRC", help="An image file or a folder of images.")
    ],
    dst: Annotated[
        Path, typer.Argument(metavar="DST", help="Output folder (PNG, relative paths kept).")
    ],
    protector: Annotated[str, typer.Option(metavar="PATH|NAME", help=PROTECTOR_HELP)],
    targets: Annotated[list[Path] | None, typer.Option(metavar="PATH", help=TARGETS_HELP)] = None,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="Images per batch.")] = 64,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    shard: ShardOption = None,
) -> None:
    """Protect images; PNG output with a recovery record, manifest, resumable.

    Ends with one line of quality: files written and the mean PSNR (and SSIM, where the
    manifest records it) of the protected images against the originals. With --shard
    (or under torchrun) only one shard's files; the shards together write the same
    files and one manifest (see docs/scaling.md).
    """
    _run_tree("protect", src, dst, protector, targets, batch_size, device, shard)


@app.command("recover")
def recover(
    src: Annotated[
        Path, typer.Argument(metavar="SRC", help="A protected PNG or a folder of them.")
    ],
    dst: Annotated[
        Path, typer.Argument(metavar="DST", help="Output folder for the recovered originals.")
    ],
    protector: Annotated[str, typer.Option(metavar="PATH|NAME", help=PROTECTOR_HELP)],
    targets: Annotated[list[Path] | None, typer.Option(metavar="PATH", help=TARGETS_HELP)] = None,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="Images per batch.")] = 64,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    shard: ShardOption = None,
) -> None:
    """Recover originals bit for bit; altered files approximately (and reported).

    With --shard (or under torchrun) only one shard's files.
    """
    _run_tree("recover", src, dst, protector, targets, batch_size, device, shard)
