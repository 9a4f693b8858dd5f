"""``invprotect train-targets``: train a target classifier on an image folder.

With ``--protector`` the folder is a protected one and the classifier trains on the
originals recovered in memory (`invprotect.data.protected.load_protected_set`): nothing is
written to disk but the classifier. The run is `invprotect.training.run_target_training`.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from invprotect.checkpoint import CheckpointError
from invprotect.cli.app import app
from invprotect.cli.options import (
    ArchOption,
    CacheDirOption,
    CacheOffOption,
    CheckpointOutOption,
    DeviceOption,
    EpochsOption,
    MaxTrainImagesOption,
    StepBatchOption,
    ThreadsOption,
    TrainDataOption,
)
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, stages, training_processes
from invprotect.data import default_cache_dir
from invprotect.training import ClassifierTrainingConfig, TargetRunConfig, run_target_training

_PROTECTED_HELP = (
    "DATA is protected: the key that recovers it. Trains on the originals recovered in "
    "memory; none is written to disk (no decoding cache)."
)


@app.command("train-targets")
def train_targets(
    data: TrainDataOption,
    arch: ArchOption,
    out: CheckpointOutOption,
    epochs: EpochsOption = 15,
    batch_size: StepBatchOption = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle SGD).")] = 0.1,
    size: Annotated[
        int | None, typer.Option(help="Working size: fit every image to SIZE x SIZE.")
    ] = None,
    max_train_images: MaxTrainImagesOption = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order, augmentation.")] = 0,
    device: DeviceOption = "auto",
    precision: Annotated[str, typer.Option(help="'auto', 'bf16' or 'fp32'.")] = "auto",
    cache_dir: CacheDirOption = None,
    no_cache: CacheOffOption = False,
    protector: Annotated[
        str | None, typer.Option(metavar="PATH|NAME", help=_PROTECTED_HELP)
    ] = None,
    threads: ThreadsOption = None,
) -> None:
    """Train a target classifier; resumable (rerun the same command after an interruption).

    Under ``torchrun --nproc-per-node N`` each process trains on its share of every
    batch of BATCH_SIZE images (see docs/scaling.md); rank 0 writes the checkpoint.
    """
    if protector is not None and cache_dir is not None:
        raise typer.BadParameter(
            "--cache-dir would write the recovered originals to disk; leave it out with --protector"
        )
    try:
        training = ClassifierTrainingConfig(
            epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, precision=precision
        )
        cache = None if no_cache or protector is not None else cache_dir or default_cache_dir()
        config = TargetRunConfig(
            data, arch, out, training, size, max_train_images, cache, protector
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    check_output_folder(out, "--out")
    with training_processes(device) as target_device, stages() as shown:
        try:
            result = run_target_training(config, target_device, shown.listener)
        except (CheckpointError, ValueError) as error:
            raise fail(str(error)) from None
    if result.already_trained:
        console.print(f"{out} already holds a trained classifier; delete it to train again")
    elif result.saved:
        accuracy = result.model.metadata["test_accuracy"]
        summary = {"arch": arch, "test_accuracy": accuracy, "out": str(out)}
        typer.echo(json.dumps(summary))
