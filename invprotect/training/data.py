"""What the training runs share: the images they decode, where they report, what they return.

`load_training_data` is the one place where the training runs
(`invprotect.training.target_run`, `invprotect.training.protector_run`,
`invprotect.training.comdefend_run`) turn an image folder into decoded splits: the
files of a plain folder are decoded (with the decoding cache), those of a protected
folder recovered in memory with the key; a seeded subset of the training files is
taken before decoding, so that a subset costs only its own files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import torch
from torch import nn

from invprotect.data import ImageFolderIndex, ImageSet, load_image_set, train_test_split
from invprotect.data.protected import load_protected_set
from invprotect.models.protector import Protector

STATE_DIR = "train-state"
"""Sub-directory of a run's output folder holding its training state (for resuming)."""

Progress = Callable[[str, int, "int | None", str], None]
"""``progress(stage, done, total, status)``: how far a stage of a run is (``total`` may be
``None`` while unknown)."""

Log = Callable[[str], None]
"""Receives one line of news (a stage starts, a file is skipped, an epoch ends)."""


def no_progress(stage: str, done: int, total: int | None, status: str) -> None:
    """A `Progress` that shows nothing."""


def no_log(message: str) -> None:
    """A `Log` that shows nothing."""


@dataclass(frozen=True)
class Listener:
    """Where a run reports: the progress of its stages, and lines of news.

    Attributes:
        progress: Receives ``(stage, done, total, status)``.
        log: Receives one line at a time.
    """

    progress: Progress = no_progress
    log: Log = no_log


SILENT = Listener()
"""A `Listener` that shows nothing (the runs' default)."""

Model = TypeVar("Model", bound=nn.Module)


@dataclass(frozen=True)
class RunResult(Generic[Model]):
    """What a training run ended with.

    Attributes:
        model: The trained model (in ``eval()`` mode), its ``metadata`` filled in.
        already_trained: The output folder held a finished checkpoint: it was loaded,
            not trained (a rerun after the end).
        saved: This process wrote the checkpoint (rank 0 of a distributed run).
    """

    model: Model
    already_trained: bool = False
    saved: bool = True


@dataclass(frozen=True)
class TrainingData:
    """The decoded splits of a run.

    Attributes:
        train: The training images (the seeded subset, when one was asked for).
        test: The test images; ``None`` when the run asked for none.
        key_id: The SHA-256 of the key that recovered a protected folder (``None``:
            the folder was decoded as it is).
    """

    train: ImageSet
    test: ImageSet | None
    key_id: str | None = None

    @property
    def bad_files(self) -> int:
        """Files of both splits that could not be decoded (and were skipped)."""
        return len(self.train.bad_files) + (len(self.test.bad_files) if self.test else 0)


def subset_index(index: ImageFolderIndex, count: int | None, seed: int) -> ImageFolderIndex:
    """A seeded random ``count`` of ``index``'s files, in their order (all when ``None``).

    Example:
        >>> from pathlib import Path
        >>> index = ImageFolderIndex(Path("."), ["a"], [(Path(f"{i}.png"), 0) for i in range(5)])
        >>> " ".join(path.name for path, _ in subset_index(index, 3, seed=0).samples)
        '0.png 1.png 4.png'
    """
    if count is None or count >= len(index):
        return index
    keep = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))
    samples = [index.samples[i] for i in sorted(keep[:count].tolist())]
    return ImageFolderIndex(index.root, index.classes, samples)


def load_training_data(
    data: Path,
    size: int | None,
    *,
    cache_dir: Path | None = None,
    key: Protector | None = None,
    with_test: bool = True,
    max_train_images: int | None = None,
    seed: int = 0,
    split_seed: int = 0,
    progress: Progress = no_progress,
    log: Log = no_log,
) -> TrainingData:
    """Decode (or, with ``key``, recover in memory) the splits of an image folder.

    Args:
        data: ImageFolder root: ``root/<class>/<image>`` (split 9:1 with
            ``split_seed``), or ``train/`` and ``test/``.
        size: Working size (every image fitted to ``size x size``); ``None`` keeps it.
        cache_dir: Keep decoded images here for the next run (``None``: no cache; never
            used with ``key``, which would write the originals to disk).
        key: ``data`` is protected: the protector that recovers it.
        with_test: Decode the test split too.
        max_train_images: Keep a seeded random subset of this many training files.
        seed: Seed of that subset.
        split_seed: Seed of the 9:1 split of a folder without ``train/`` and ``test/``.
        progress: Receives the stage ``"decoding"`` (``"recovering"`` with ``key``).
        log: Receives a line per skipped file and one with the counts.

    Raises:
        ValueError: For a bad folder, no decodable image, or a protected file that
            cannot give its original.
    """
    train_index, test_index = train_test_split(data, seed=split_seed)
    indices = [subset_index(train_index, max_train_images, seed)]
    indices += [test_index] if with_test else []
    stage = "decoding" if key is None else "recovering"
    total, done = sum(len(index) for index in indices), 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        progress(stage, done, total, "")

    if key is None:
        sets = [load_image_set(index, size, cache_dir, advance) for index in indices]
    else:
        sets = [load_protected_set(index, key, size, advance) for index in indices]
    key_id = None if key is None else key.key_id
    loaded = TrainingData(sets[0], sets[1] if with_test else None, key_id)
    for bad in loaded.train.bad_files + (loaded.test.bad_files if loaded.test else []):
        log(f"skipped {bad.reason}")
    log(_counts(loaded, key is not None))
    return loaded


def _counts(loaded: TrainingData, recovered: bool) -> str:
    train, test = loaded.train, loaded.test
    images = f"{len(train)} training" + (f" and {len(test)} test" if test else "")
    mebibytes = (train.nbytes + (test.nbytes if test else 0)) / 2**20
    if recovered:
        return (
            f"{images} images recovered in memory, {len(train.classes)} classes, "
            f"{mebibytes:.0f} MiB"
        )
    return f"{images} images, {len(train.classes)} classes, {mebibytes:.0f} MiB decoded"
