"""Fixtures of the defence tests: real CIFAR-10 images and a small trained ComDefend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from invprotect.data import ImageSet, load_image_set, scan_image_folder
from invprotect.defences import ComDefend, ComDefendConfig, train_comdefend

TINY_COMDEFEND = ComDefendConfig(com_channels=(16,), rec_channels=(16,), noise_std=2.0)
"""A ComDefend small enough to train in seconds.

Same code (12 bits per pixel) and objective as the presets, but a code noise of 2
instead of 20: with the paper's noise, 300 steps of a network this small do not yet
beat an untrained one (the codes stay random for the first thousand steps or so).
"""


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: on a busy 2-core machine two threads are several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="session")
def cifar_test_images(cifar10_root: Path) -> ImageSet:
    """The first 40 test images of each CIFAR-10 class (400 images, 32x32)."""
    index = scan_image_folder(cifar10_root / "test")
    per_class: dict[int, int] = {}
    keep = []
    for path, label in index.samples:
        if per_class.get(label, 0) < 40:
            per_class[label] = per_class.get(label, 0) + 1
            keep.append((path, label))
    index.samples = keep
    return load_image_set(index)


@pytest.fixture
def images(cifar_test_images: ImageSet) -> torch.Tensor:
    """Six real CIFAR-10 images as float RGB on the 8-bit grid."""
    return cifar_test_images.batch(range(0, 400, 67))


@pytest.fixture(scope="session")
def comdefend_weights(
    cifar_test_images: ImageSet, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny ComDefend trained for 300 steps on 300 CIFAR-10 images, saved as a checkpoint."""
    train = cifar_test_images.subset(range(300))
    test = cifar_test_images.subset(range(300, 400))
    with single_thread():
        model = train_comdefend(
            train,
            test,
            epochs=100,
            batch_size=16,
            seed=0,
            config=TINY_COMDEFEND,
            lr=1e-2,
            max_steps=300,
        )
    return model.save(tmp_path_factory.mktemp("comdefend") / "checkpoint")


@pytest.fixture(scope="session")
def trained_comdefend(comdefend_weights: Path) -> ComDefend:
    return ComDefend.load(comdefend_weights)
