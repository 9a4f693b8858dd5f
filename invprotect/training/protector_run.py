"""A protector's training run: targets and data in, the key with its metadata out, resumable.

`run_protector_training` is what ``invprotect train`` and the demo call: it checks the
settings before any decoding (attack names, the perceptual network, the batch against
the processes), loads the target classifiers, decodes the training split at the
preset's size, trains a RAEG with `invprotect.training.protector.train_protector`
(state under ``OUT/train-state``, so a rerun resumes) and saves the key with the
metadata of the run. A rerun after the end loads the finished key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from invprotect import distributed
from invprotect.attacks import AttackLayer
from invprotect.checkpoint import CONFIG_FILE
from invprotect.data import ImageSet
from invprotect.models import RAEG, RAEG_PRESETS
from invprotect.targets import Classifier, Ensemble
from invprotect.training.data import (
    SILENT,
    STATE_DIR,
    Listener,
    Log,
    Progress,
    RunResult,
    TrainingData,
    load_training_data,
)
from invprotect.training.protector import (
    ProtectorEvent,
    ProtectorTrainingConfig,
    held_psnr,
    perceptual_loss,
    train_protector,
)

FOOLING_WINDOW = 50
"""The metadata's ``final_fooling_rate`` is the mean over this many last steps."""


@dataclass(frozen=True)
class ProtectorRunConfig:
    """What a protector's run trains against, on which data, and where it writes the key.

    Attributes:
        data: ImageFolder root of the images to protect (its training split is used).
        targets: Target classifier checkpoints (at least one).
        out: Protector checkpoint directory to write (the key).
        preset: RAEG preset (`invprotect.models.RAEG_PRESETS`); its image size is the
            working size of the data.
        training: Steps, batch size, losses, attacks and seed.
        cache_dir: Keep decoded images here for the next run (``None``: no cache).
        max_train_images: Train on a seeded random subset of this many files.
        decoded: The training split, already decoded at the preset's size (the demo
            decodes once for all its runs); ``None``: the run decodes ``data``.

    Raises:
        ValueError: For an unknown preset (`invprotect.UnknownPresetError`) or no target.
    """

    data: Path
    targets: tuple[Path, ...]
    out: Path
    preset: str = "cpu-32"
    training: ProtectorTrainingConfig = field(default_factory=ProtectorTrainingConfig)
    cache_dir: Path | None = None
    max_train_images: int | None = None
    decoded: TrainingData | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        RAEG_PRESETS[self.preset]  # raises UnknownPresetError, with the known presets
        if not self.targets:
            raise ValueError("give at least one target classifier")


def run_protector_training(
    config: ProtectorRunConfig,
    device: torch.device | None = None,
    listener: Listener = SILENT,
) -> RunResult[RAEG]:
    """Train the protector of ``config``; resume an interrupted run, or load a finished key.

    Under ``torchrun``, call this inside `invprotect.distributed.process_group`: each
    rank trains on its share of every batch; the decoding cache is filled by rank 0
    first, and the key written by rank 0 alone.

    Args:
        config: Data, targets, settings and output folder.
        device: Where to train (default: the CPU).
        listener: Receives the progress of the stages ``"decoding"`` and
            ``"protector"`` (steps, with the loss, PSNR and fooling rates as status), and
            lines: the data counts, skipped files and the start of training.

    Raises:
        ValueError: For an unknown attack, an unusable perceptual network, a batch
            smaller than the processes, an unloadable target, a bad data folder, data
            whose classes differ from the targets', or a state of other settings.
    """
    device = device or torch.device("cpu")
    if (config.out / CONFIG_FILE).is_file():
        return RunResult(RAEG.load(config.out, device), already_trained=True)
    settings = config.training
    AttackLayer(settings.attacks)  # refuse unknown attacks before decoding the data
    perceptual_loss(settings.perceptual, device)  # ... and an unusable perceptual network
    distributed.share(settings.batch_size)  # ... and a batch too small for the processes
    members = [Classifier.load(path, device) for path in config.targets]
    progress, log = listener.progress, listener.log
    decoded = config.decoded
    train = decoded.train if decoded is not None else _decode(config, progress, log)
    _check(train.classes, members[0].classes, train.images.shape[-1], config.preset)
    torch.manual_seed(settings.seed)
    raeg = RAEG.from_preset(config.preset).to(device)
    log(f"training the protector for {settings.steps} steps on {len(train)} images")
    state = config.out / STATE_DIR
    events = train_protector(raeg, Ensemble(members), train, settings, state, _shown(progress))
    if not distributed.is_main():
        return RunResult(raeg, saved=False)
    last = events[-FOOLING_WINDOW:]
    raeg.metadata = {
        "data": str(config.data.resolve()),
        "targets": [str(path.resolve()) for path in config.targets],
        "classes": train.classes,
        "training": {
            "steps": settings.steps,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "seed": settings.seed,
            "processes": distributed.world_size(),
        },
        "attacks": settings.attacks,
        "recipe": {
            "fooling": settings.fooling,
            "margin": settings.margin,
            "smoothness": settings.smoothness,
        },
        "perceptual": settings.perceptual,
        "target_psnr": settings.target_psnr,
        "train_psnr": held_psnr(raeg, train, seed=settings.seed),
        "final_fooling_rate": sum(e.fooling_rate for e in last) / len(last) if last else None,
    }
    raeg.save(config.out)
    return RunResult(raeg)


def _decode(config: ProtectorRunConfig, progress: Progress, log: Log) -> ImageSet:
    """The training split at the preset's size (no test split: the run measures none)."""
    size = RAEG_PRESETS[config.preset].image_size
    with distributed.main_first():  # rank 0 fills the decoding cache first
        return load_training_data(
            config.data,
            size,
            cache_dir=config.cache_dir,
            with_test=False,
            max_train_images=config.max_train_images,
            seed=config.training.seed,
            progress=progress,
            log=log,
        ).train


def _check(classes: list[str], known: list[str], side: int, preset: str) -> None:
    if classes != known:
        raise ValueError(f"the targets know classes {known}, the data {classes}")
    wanted = RAEG_PRESETS[preset].image_size
    if side != wanted:
        raise ValueError(f"preset {preset!r} trains on {wanted} px images; the data has {side} px")


def _shown(progress: Progress) -> Callable[[ProtectorEvent], None]:
    """The ``on_event`` of `train_protector`: steps as progress, live figures as status."""

    def show(event: ProtectorEvent) -> None:
        status = (
            f"loss {event.loss:.4f} PSNR {event.smoothed_psnr:.1f} dB "
            f"fooled {event.fooling_rate:.2f} "
            f"(attacked {event.attacked_fooling_rate:.2f}) "
            f"recovered acc {event.recovered_accuracy:.2f}"
        )
        progress("protector", event.step, event.steps, status)

    return show
