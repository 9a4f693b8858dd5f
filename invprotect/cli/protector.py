"""``invprotect train``, ``protect`` and ``recover``: the protector's life cycle.

``train`` is `invprotect.training.run_protector_training`; ``protect`` and ``recover``
walk a folder with `invprotect.files.protect.protect_tree` and
`invprotect.files.recover.recover_tree`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from invprotect._registry import UnknownNameError
from invprotect.checkpoint import CheckpointError
from invprotect.cli.app import app
from invprotect.cli.options import (
    DeviceOption,
    FileBatchOption,
    PoisonEpsilonOption,
    PoisonPsnrOption,
    PoisonStepsOption,
    PoisonThroughOption,
    ProtectorOption,
    StepBatchOption,
    TargetPsnrOption,
    TargetsOption,
    ThreadsOption,
    load_protector_option,
)
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, progress_bar, stages, training_processes
from invprotect.cli.shards import ShardOption, resolve_shard
from invprotect.data import default_cache_dir
from invprotect.device import pick_device
from invprotect.files.manifest import MANIFEST, manifest_part, read_manifest
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.files.tree import TreeReport
from invprotect.models import RAEG, RAEG_PRESETS
from invprotect.models.poison import PoisonConfig
from invprotect.sharding import Shard, worker_device
from invprotect.training import ProtectorRunConfig, run_protector_training
from invprotect.training.protector import ProtectorTrainingConfig
from invprotect.training.recipes import RECIPES

SUMMARY_KEYS = ("train_psnr", "final_fooling_rate")
"""The figures of the key's metadata that ``train``'s JSON line repeats."""

_PERCEPTUAL_HELP = (
    "Perceptual loss: 'ssim', or a classifier checkpoint whose first convolutions' "
    "activations are compared."
)
_ATTACKS_HELP = (
    "Attack mix of training as 'name=weight,...' (default: the recipe's; for 'margin', no "
    "attack, noise, blur, median filter, resize, crop and JPEG equally)."
)
_RECIPE_HELP = (
    f"How training pushes the images: one of {', '.join(RECIPES)} (compared in "
    "docs/results.md)."
)


@app.command("train")
def train(
    data: Annotated[Path, typer.Option(help="ImageFolder root of the images to protect.")],
    targets: Annotated[list[Path], typer.Option(help="Target classifier checkpoints.")],
    out: Annotated[Path, typer.Option(help="Protector checkpoint directory to write (the key).")],
    preset: Annotated[str, typer.Option(help=f"One of {', '.join(RAEG_PRESETS)}.")] = "cpu-32",
    target_psnr: TargetPsnrOption = 30.0,
    steps: Annotated[int, typer.Option(min=1, help="Generator updates.")] = 2000,
    batch_size: StepBatchOption = 32,
    lr: Annotated[
        float, typer.Option(help="Starting Adam learning rate (cosine decay).")
    ] = ProtectorTrainingConfig.lr,
    perceptual: Annotated[str, typer.Option(help=_PERCEPTUAL_HELP)] = "ssim",
    attacks: Annotated[str | None, typer.Option(help=_ATTACKS_HELP)] = None,
    recipe: Annotated[str, typer.Option(help=_RECIPE_HELP)] = "margin",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, batches and attacks.")] = 0,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
) -> None:
    """Train a protector against target classifiers; resumable (rerun the same command).

    Under ``torchrun --nproc-per-node N`` each process trains on its share of every
    batch of BATCH_SIZE images (see docs/scaling.md); rank 0 writes the key.
    """
    try:
        pushing = RECIPES[recipe].settings()
        pushing["attacks"] = _parse_attacks(attacks) or pushing["attacks"]
        settings = ProtectorTrainingConfig(
            *(steps, batch_size, lr), target_psnr=target_psnr, perceptual=perceptual,
            seed=seed, **pushing,
        )
        config = ProtectorRunConfig(
            data, tuple(targets), out, preset, settings, cache_dir=default_cache_dir()
        )
    except ValueError as error:
        raise fail(str(error)) from None
    check_output_folder(out, "--out")
    with training_processes(device) as target_device, stages() as shown:
        try:
            result = run_protector_training(config, target_device, shown.listener)
        except (UnknownNameError, CheckpointError, ValueError) as error:
            raise fail(str(error)) from None
    if result.already_trained:
        console.print(f"{out} already holds a trained protector; delete it to train again")
    elif result.saved:
        figures = {key: result.model.metadata[key] for key in SUMMARY_KEYS}
        typer.echo(json.dumps({"out": str(out), **figures}))


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


def _print_files(report: TreeReport) -> None:
    """One line per file that failed, was altered, approximate, mismatched or skipped."""
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


def _summary(report: TreeReport, shard: Shard | None) -> dict[str, int | float | str | None]:
    """The counts of the JSON line a folder command ends with."""
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
    return summary


def _print_quality(
    report: TreeReport, means: dict[str, float | None], summary: dict[str, int | float | str | None]
) -> None:
    """Print ``protect``'s line of quality; add the mean PSNR and SSIM to ``summary``."""
    quality = ""
    for key, name, unit, digits in (("psnr", "PSNR", " dB", 2), ("ssim", "SSIM", "", 3)):
        value = means[key]
        summary[f"mean_{key}"] = None if value is None else round(value, digits + 1)
        quality += "" if value is None else f", mean {name} {value:.{digits}f}{unit}"
    console.print(
        f"protected {report.written} files{quality} (protected vs original); "
        f"{report.skipped} already done, {len(report.failed)} failed"
    )


def _warn_unknown_classes(src: Path, classes: list[str]) -> None:
    """Say which images a poison must push from a guessed class: no class folder it knows."""
    folders = []
    if src.is_dir():
        folders = sorted(p.name for p in src.iterdir() if p.is_dir() and p.name[0] != ".")
    unknown = [name for name in folders if name not in classes]
    if folders and not unknown:
        return
    where = (
        f"class folders the --targets do not know ({', '.join(unknown[:5])}"
        f"{', ...' if len(unknown) > 5 else ''})"
        if unknown
        else "SRC has no class folders"
    )
    console.print(
        f"[yellow]warning[/] {escape(where)}: the poison pushes their images from the class "
        "the targets see, which is weaker; protect a folder of SRC/<class>/<image> with the "
        f"targets' classes ({escape(', '.join(classes[:5]))}{', ...' if len(classes) > 5 else ''})"
    )


def _run_tree(
    command: str,
    src: Path,
    dst: Path,
    protector: str,
    targets: list[Path] | None,
    batch_size: int,
    device: str,
    shard: Shard | None,
    poison: PoisonConfig | None = None,
) -> TreeReport:
    shard = resolve_shard(shard)
    _check_destination(src, dst)
    try:
        device = str(worker_device(pick_device(device)))
    except ValueError as error:
        raise fail(str(error)) from None
    loaded = load_protector_option(protector, device, targets, command == "protect", poison)
    if isinstance(loaded, RAEG) and loaded.poison is not None:
        _warn_unknown_classes(src, loaded.poison.classes)
    root = dst.parent if src.is_file() and dst.suffix.lower() == ".png" else dst
    manifest = root / MANIFEST
    before: dict[str, dict] = {}
    if command == "protect":
        before = _entries(manifest, shard)
    work = protect_tree if command == "protect" else recover_tree
    label = command if shard is None else f"{command} {shard}"
    try:
        with progress_bar() as bar:
            task: list[int] = []  # added once the run has counted its files
            report = work(
                src, dst, loaded, batch_size, lambda n: bar.advance(task[0], n), shard,
                started=lambda total: task.append(bar.add_task(label, total=total, status="")),
            )
    except ValueError as error:
        raise fail(str(error)) from None
    _print_files(report)
    summary = _summary(report, shard)
    if command == "protect":
        _print_quality(report, _means(manifest, before, shard), summary)
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
    protector: ProtectorOption,
    targets: TargetsOption = None,
    poison_steps: PoisonStepsOption = 0,
    poison_epsilon: PoisonEpsilonOption = None,
    poison_psnr: PoisonPsnrOption = None,
    poison_through: PoisonThroughOption = None,
    batch_size: FileBatchOption = 64,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    shard: ShardOption = None,
) -> None:
    """Protect images; PNG output with a recovery record, manifest, resumable.

    Ends with one line of quality: files written and the mean PSNR (and SSIM, where the
    manifest records it) of the protected images against the originals. With --shard
    (or under torchrun) only one shard's files; the shards together write the same
    files and one manifest (see docs/scaling.md). With --poison-steps, each image is
    also refined into a targeted poison against --targets (see docs/thief.md).
    """
    poison = None
    if poison_steps:
        through = tuple(poison_through or ())
        poison = PoisonConfig(poison_steps, poison_epsilon, psnr=poison_psnr, through=through)
    _run_tree("protect", src, dst, protector, targets, batch_size, device, shard, poison)


@app.command("recover")
def recover(
    src: Annotated[
        Path, typer.Argument(metavar="SRC", help="A protected PNG or a folder of them.")
    ],
    dst: Annotated[
        Path, typer.Argument(metavar="DST", help="Output folder for the recovered originals.")
    ],
    protector: ProtectorOption,
    targets: TargetsOption = None,
    batch_size: FileBatchOption = 64,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    shard: ShardOption = None,
) -> None:
    """Recover originals bit for bit; altered files approximately (and reported).

    With --shard (or under torchrun) only one shard's files.
    """
    _run_tree("recover", src, dst, protector, targets, batch_size, device, shard)
