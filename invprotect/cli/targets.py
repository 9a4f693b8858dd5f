"""``invprotect train-targets``: train a target classifier on an image folder.

With ``--protector`` the folder is a protected one and the classifier trains on the
originals recovered in memory (`invprotect.data.protected.load_protected_set`): nothing is
written to disk but the classifier.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.markup import escape

from invprotect import distributed
from invprotect.checkpoint import CONFIG_FILE, CheckpointError, load_checkpoint
from invprotect.cli.app import DeviceOption, ThreadsOption, app
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, progress_bar
from invprotect.data import ImageSet, default_cache_dir, load_image_set, train_test_split
from invprotect.data.protected import load_protected_set
from invprotect.device import pick_device
from invprotect.models.protector import Protector
from invprotect.protectors import load_protector
from invprotect.targets import Classifier, list_archs
from invprotect.training import ClassifierTrainingConfig, TrainingEvent, train_classifier

STATE_DIR = "train-state"
"""Sub-directory of ``--out`` holding the per-epoch training state (for resuming)."""


@contextmanager
def training_processes(device: str) -> Iterator[torch.device]:
    """Join torchrun's process group for a training command; yields this rank's device.

    See `invprotect.distributed.process_group` (without torchrun: one process, the
    device of ``--device``). While the block runs, ranks other than 0 print nothing
    (rank 0 shows progress for all); a crash report after it is printed by every rank.
    """
    with ExitStack() as stack:
        try:
            chosen = stack.enter_context(distributed.process_group(pick_device(device)))
        except ValueError as error:  # more processes than GPUs
            raise fail(str(error)) from None
        console.quiet = not distributed.is_main()
        try:
            yield chosen
        finally:
            console.quiet = False


def load_split(
    data: Path, size: int | None, cache_dir: Path | None, description: str
) -> tuple[ImageSet, ImageSet]:
    """Decode the train and test splits of ``data`` with a progress bar; report bad files."""
    train_index, test_index = train_test_split(data)
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(train_index) + len(test_index), status="")
        train, test = (
            load_image_set(index, size, cache_dir, lambda n: bar.advance(task, n))
            for index in (train_index, test_index)
        )
    for bad in train.bad_files + test.bad_files:
        console.print(f"[yellow]skipped[/] {escape(bad.reason)}")
    console.print(
        f"{len(train)} training and {len(test)} test images, {len(train.classes)} classes, "
        f"{(train.nbytes + test.nbytes) / 2**20:.0f} MiB decoded"
    )
    return train, test


def load_protected_split(
    data: Path, spec: str, size: int | None, device: torch.device
) -> tuple[ImageSet, ImageSet, Protector]:
    """Recover the train and test splits of a protected folder in memory, with a progress bar.

    The key recovers on ``device`` (this rank's device under torchrun).
    """
    try:
        protector = load_protector(spec, device)
    except (CheckpointError, ValueError) as error:
        raise fail(f"cannot load the protector {spec}: {error}") from None
    train_index, test_index = train_test_split(data)
    with progress_bar() as bar:
        task = bar.add_task("recovering", total=len(train_index) + len(test_index), status="")
        train, test = (
            load_protected_set(index, protector, size, lambda n: bar.advance(task, n))
            for index in (train_index, test_index)
        )
    console.print(
        f"{len(train)} training and {len(test)} test images recovered in memory, "
        f"{len(train.classes)} classes, {(train.nbytes + test.nbytes) / 2**20:.0f} MiB"
    )
    return train, test, protector


@app.command("train-targets")
def train_targets(
    data: Annotated[
        Path, typer.Option(help="ImageFolder root: root/<class>/<image>, or train/ and test/.")
    ],
    arch: Annotated[str, typer.Option(help=f"Architecture: {', '.join(list_archs())}.")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write (safetensors + JSON).")],
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training set.")] = 15,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle SGD).")] = 0.1,
    size: Annotated[
        int | None, typer.Option(help="Working size: fit every image to SIZE x SIZE.")
    ] = None,
    max_train_images: Annotated[
        int | None, typer.Option(min=1, help="Train on a seeded random subset of this many.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order, augmentation.")] = 0,
    device: DeviceOption = "auto",
    precision: Annotated[str, typer.Option(help="'auto', 'bf16' or 'fp32'.")] = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Keep decoded images here for the next run.")
    ] = None,
    no_cache: Annotated[bool, typer.Option(help="Do not cache decoded images.")] = False,
    protector: Annotated[
        str | None,
        typer.Option(
            metavar="PATH|NAME",
            help="DATA is protected: the key that recovers it. Trains on the originals "
            "recovered in memory; none is written to disk (no decoding cache).",
        ),
    ] = None,
    threads: ThreadsOption = None,
) -> None:
    """Train a target classifier; resumable (rerun the same command after an interruption).

    Under ``torchrun --nproc-per-node N`` each process trains on its share of every
    batch of BATCH_SIZE images (see docs/scaling.md); rank 0 writes the checkpoint.
    """
    if arch not in list_archs():
        raise typer.BadParameter(f"unknown architecture {arch!r}; choose from {list_archs()}")
    if (out / CONFIG_FILE).is_file():
        console.print(f"{out} already holds a trained classifier; delete it to train again")
        raise typer.Exit(0)
    if protector is not None and cache_dir is not None:
        raise typer.BadParameter(
            "--cache-dir would write the recovered originals to disk; leave it out with --protector"
        )
    check_output_folder(out, "--out")
    with training_processes(device) as target_device:
        cache = None if no_cache else (cache_dir or default_cache_dir())
        key = None
        try:
            if protector is not None:  # every rank recovers on its own device, in memory
                train, test, key = load_protected_split(data, protector, size, target_device)
            else:
                # Rank 0 decodes first and fills the cache; the other ranks then read it.
                with distributed.main_first() if cache else nullcontext():
                    train, test = load_split(data, size, cache, "decoding")
            config = ClassifierTrainingConfig(
                epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, precision=precision
            )
        except ValueError as error:
            raise fail(str(error)) from None
        if max_train_images is not None and max_train_images < len(train):
            keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
            train = train.subset(keep[:max_train_images].sort().values)
        torch.manual_seed(seed)
        model = Classifier(arch, train.classes, input_size=train.images.shape[-1])
        model.to(target_device)
        processes = distributed.world_size()
        console.print(
            f"training {arch} on {target_device}, precision {precision}"
            + (f", {processes} processes" if processes > 1 else "")
        )
        with progress_bar() as bar:
            task = bar.add_task(arch, total=epochs * -(-len(train) // batch_size), status="")

            def show(event: TrainingEvent) -> None:
                status = f"epoch {event.epoch}/{epochs} loss {event.loss:.3f}"
                if event.test_accuracy is not None:
                    status += f" test acc {event.test_accuracy:.3f}"
                    bar.console.print(f"{status} ({event.epoch_seconds:.0f} s)")
                done = (event.epoch - 1) * event.steps_per_epoch + event.step
                bar.update(task, completed=done, status=status)

            try:
                train_classifier(model, train, test, config, out / STATE_DIR, show)
            except ValueError as error:
                raise fail(str(error)) from None
        if not distributed.is_main():
            return
    _, state = load_checkpoint(out / STATE_DIR)
    history = state["history"]
    model.metadata = {
        "data": str(data.resolve()),
        "data_fingerprint": train.fingerprint(),
        "train_images": len(train),
        "test_images": len(test),
        "test_accuracy": history[-1]["test_accuracy"],
        "epochs": epochs,
        "seconds": sum(h["seconds"] for h in history),
        "history": history,
        "training": state["config"],
        "processes": processes,
    }
    if key is not None:
        model.metadata["protector_key_id"] = key.key_id
    model.save(out)
    summary = {"arch": arch, "test_accuracy": history[-1]["test_accuracy"], "out": str(out)}
    typer.echo(json.dumps(summary))
