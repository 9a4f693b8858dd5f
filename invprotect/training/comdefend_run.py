"""A ComDefend's training run: clean images in, a checkpoint with its metrics out.

`run_comdefend_training` is what ``invprotect train-defence comdefend`` calls: it
decodes the folder's splits (split with the run's seed), trains with
`invprotect.defences.train_comdefend` (the loop, which stays beside the model it
trains), measures the reconstruction PSNR on the test split and saves the checkpoint
with the facts of the run in its metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from invprotect.checkpoint import CONFIG_FILE
from invprotect.defences import COMDEFEND_PRESETS, ComDefend, TrainingStep, train_comdefend
from invprotect.training.data import SILENT, Listener, Progress, load_training_data

STAGE = "comdefend"
"""The progress stage of the training steps."""


@dataclass(frozen=True)
class ComDefendRunConfig:
    """What a ComDefend's run trains on and where it writes.

    Attributes:
        data: ImageFolder root: ``root/<class>/<image>`` (split 9:1 with ``seed``) or
            ``train/`` and ``test/``.
        out: Checkpoint directory to write (safetensors + JSON).
        preset: Architecture (`invprotect.defences.COMDEFEND_PRESETS`).
        size: Every image fitted to ``size x size``; a multiple of the preset's
            ``space_to_depth``.
        epochs: Passes over the training set.
        batch_size: Images per step.
        lr: Initial Adam learning rate (cosine decay).
        seed: Seed of the split, the subset, initialisation, order and noise.
        max_train_images: Train on a seeded random subset of this many files.
        cache_dir: Keep decoded images here for the next run (``None``: no cache).
        overwrite: Replace a checkpoint already in ``out``.

    Raises:
        ValueError: For an unknown preset, or a ``size`` the preset cannot take.
    """

    data: Path
    out: Path
    preset: str = "cpu"
    size: int = 32
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    max_train_images: int | None = None
    cache_dir: Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        multiple = COMDEFEND_PRESETS[self.preset].space_to_depth  # UnknownPresetError
        if self.size % multiple:
            raise ValueError(
                f"--size must be a multiple of {multiple} for preset {self.preset!r}, "
                f"got {self.size}"
            )


def run_comdefend_training(config: ComDefendRunConfig, listener: Listener = SILENT) -> ComDefend:
    """Train the ComDefend of ``config`` on the CPU and save it to ``config.out``.

    Args:
        config: Data, sizes, settings and output folder.
        listener: Receives the progress of the stages ``"decoding"`` and ``"comdefend"``
            (steps, with the epoch, loss and PSNR as status), and lines: the data
            counts, skipped files and the start of training.

    Returns:
        The trained model; its ``metrics`` hold ``test_psnr``, ``seconds`` and the
        facts of the run (``data``, ``size``, ``preset``, ``bad_files``).

    Raises:
        ValueError: If ``out`` holds a checkpoint and ``overwrite`` is off, or for a bad
            data folder.
    """
    progress, log = listener.progress, listener.log
    if (config.out / CONFIG_FILE).is_file() and not config.overwrite:
        raise ValueError(
            f"{config.out} already holds a checkpoint; pass --overwrite (overwrite=True) to "
            "replace it"
        )
    loaded = load_training_data(
        config.data,
        config.size,
        cache_dir=config.cache_dir,
        max_train_images=config.max_train_images,
        seed=config.seed,
        split_seed=config.seed,
        progress=progress,
        log=log,
    )
    train, test = loaded.train, loaded.test
    log(f"training {STAGE} ({config.preset}) on {len(train)} images, testing on {len(test)}")
    model = train_comdefend(
        *(train, test, config.epochs, config.batch_size, config.seed),
        config=COMDEFEND_PRESETS[config.preset],
        lr=config.lr,
        progress=_shown(config.epochs, progress),
    )
    model.metrics.update(
        {
            "data": str(config.data.resolve()),
            "size": config.size,
            "preset": config.preset,
            "bad_files": loaded.bad_files,
        }
    )
    model.save(config.out)
    return model


def _shown(epochs: int, progress: Progress) -> Callable[[TrainingStep], None]:
    def show(step: TrainingStep) -> None:
        status = f"epoch {step.epoch + 1}/{epochs} loss {step.loss:.5f} PSNR {step.psnr:.2f} dB"
        progress(STAGE, step.step, step.total_steps, status)

    return show
