"""A target classifier's training run: data in, a checkpoint with its metadata out, resumable.

`run_target_training` is what ``invprotect train-targets`` and the demo call: it decodes
the folder (or recovers a protected one in memory), trains with
`invprotect.training.train_classifier` while saving the state under
``OUT/train-state`` after every epoch, and writes the checkpoint with the metadata of
the whole run (the epochs of interrupted calls included). A rerun after an
interruption resumes; a rerun after the end loads the finished checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from invprotect import distributed
from invprotect.checkpoint import CONFIG_FILE, CheckpointError
from invprotect.protectors import load_protector
from invprotect.targets import Classifier, is_arch, list_archs
from invprotect.training.classifier import (
    ClassifierTrainingConfig,
    TrainingEvent,
    saved_history,
    train_classifier,
)
from invprotect.training.data import (
    SILENT,
    STATE_DIR,
    Listener,
    RunResult,
    TrainingData,
    load_training_data,
)


@dataclass(frozen=True)
class TargetRunConfig:
    """What a target classifier's run trains, on which data, and where it writes.

    Attributes:
        data: ImageFolder root: ``root/<class>/<image>`` (split 9:1) or ``train/`` and
            ``test/``; a protected folder when ``protector`` is given.
        arch: Registered architecture (`invprotect.targets.list_archs`).
        out: Checkpoint directory to write (safetensors + JSON).
        training: Epochs, batch size, learning rate, precision and seed.
        size: Working size: every image fitted to ``size x size`` (``None``: as stored).
        max_train_images: Train on a seeded random subset of this many files.
        cache_dir: Keep decoded images here for the next run (``None``: no cache).
        protector: ``data`` is protected: the key (a path or a baseline name) that
            recovers it in memory; nothing recovered is written to disk.
        evaluate: Decode the test split and measure its accuracy after every epoch.
        decoded: The splits of ``data``, already decoded (the demo decodes once for all
            its runs); ``None``: the run decodes ``data`` as the other fields say.

    Raises:
        ValueError: For an unknown architecture, or a cache with a protector (it would
            write the recovered originals to disk).
    """

    data: Path
    arch: str
    out: Path
    training: ClassifierTrainingConfig = field(default_factory=ClassifierTrainingConfig)
    size: int | None = None
    max_train_images: int | None = None
    cache_dir: Path | None = None
    protector: str | None = None
    evaluate: bool = True
    decoded: TrainingData | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not is_arch(self.arch):
            raise ValueError(f"unknown architecture {self.arch!r}; choose from {list_archs()}")
        if self.protector is not None and self.cache_dir is not None:
            raise ValueError(
                "a decoding cache would write the recovered originals to disk; "
                "give no cache_dir with a protector"
            )


def run_target_training(
    config: TargetRunConfig,
    device: torch.device | None = None,
    listener: Listener = SILENT,
) -> RunResult[Classifier]:
    """Train (or resume, or load the finished) target classifier of ``config``.

    Under ``torchrun`` call it inside `invprotect.distributed.process_group`: every rank
    trains on its share of each batch; rank 0 fills the decoding cache first, and only
    rank 0 writes the checkpoint.

    Args:
        config: Data, architecture, settings and output folder.
        device: Where to train (default: the CPU).
        listener: Receives the progress of the stages ``"decoding"`` (or
            ``"recovering"``) and ARCH (steps of the whole run, with the epoch and loss
            as status), and lines: the data counts, skipped files, the start and the
            end of each epoch.

    Raises:
        ValueError: For a bad data folder, a protector that cannot be loaded, settings
            that differ from those of the interrupted run in ``OUT/train-state``, or a
            batch too small for the processes.
    """
    device = device or torch.device("cpu")
    if (config.out / CONFIG_FILE).is_file():
        return RunResult(Classifier.load(config.out, device), already_trained=True)
    loaded = config.decoded or _load(config, device, listener)
    train, test = loaded.train, loaded.test
    torch.manual_seed(config.training.seed)
    model = Classifier(config.arch, train.classes, input_size=train.images.shape[-1])
    model.to(device)
    processes = distributed.world_size()
    listener.log(
        f"training {config.arch} on {device}, precision {config.training.precision}"
        + (f", {processes} processes" if processes > 1 else "")
    )
    show = _epochs_shown(config, len(train), listener)
    train_classifier(model, train, test, config.training, config.out / STATE_DIR, show)
    if not distributed.is_main():
        return RunResult(model, saved=False)
    history = saved_history(config.out / STATE_DIR)
    model.metadata = {
        "data": str(config.data.resolve()),
        "data_fingerprint": train.fingerprint(),
        "train_images": len(train),
        "test_images": len(test) if test is not None else 0,
        "test_accuracy": history[-1].get("test_accuracy"),
        "epochs": config.training.epochs,
        "seconds": sum(h["seconds"] for h in history),
        "history": history,
        "training": asdict(config.training),
        "processes": processes,
    }
    if loaded.key_id is not None:
        model.metadata["protector_key_id"] = loaded.key_id
    model.save(config.out)
    return RunResult(model)


def _load(
    config: TargetRunConfig, device: torch.device, listener: Listener
) -> TrainingData:
    """The splits: recovered on ``device`` with the key, else decoded (rank 0 first)."""
    options = {
        "with_test": config.evaluate,
        "max_train_images": config.max_train_images,
        "seed": config.training.seed,
        "progress": listener.progress,
        "log": listener.log,
    }
    if config.protector is not None:  # every rank recovers on its own device, in memory
        try:
            key = load_protector(config.protector, device)
        except (CheckpointError, ValueError) as error:
            raise ValueError(f"cannot load the protector {config.protector}: {error}") from None
        return load_training_data(config.data, config.size, key=key, **options)
    # Rank 0 decodes first and fills the cache; the other ranks then read it.
    with distributed.main_first() if config.cache_dir else nullcontext():
        return load_training_data(config.data, config.size, cache_dir=config.cache_dir, **options)


def _epochs_shown(
    config: TargetRunConfig, images: int, listener: Listener
) -> Callable[[TrainingEvent], None]:
    """The ``on_event`` of `train_classifier`: steps as progress, each epoch's end as a line."""
    epochs = config.training.epochs
    total = epochs * -(-images // config.training.batch_size)

    def show(event: TrainingEvent) -> None:
        status = f"epoch {event.epoch}/{epochs} loss {event.loss:.3f}"
        if event.test_accuracy is not None:
            status += f" test acc {event.test_accuracy:.3f}"
            listener.log(f"{status} ({event.epoch_seconds:.0f} s)")
        done = (event.epoch - 1) * event.steps_per_epoch + event.step
        listener.progress(config.arch, done, total, status)

    return show
