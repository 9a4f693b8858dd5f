"""Shared fixtures: every test starts from fixed torch and NumPy seeds, on the CPU."""

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from invprotect.data import default_cifar10_root


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread per test process: the tests use small tensors, for which more threads
    # mostly add synchronisation, and OpenMP threads spin badly when cores are shared.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def device() -> torch.device:
    return torch.device("cpu")


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """The CIFAR-10 ImageFolder from ../shared (or $INVPROTECT_CIFAR10); CI has it too."""
    root = default_cifar10_root()
    assert root is not None, "CIFAR-10 not found: set INVPROTECT_CIFAR10 to its folder"
    return root


@pytest.fixture
def small_image_folder(tmp_path: Path, cifar10_root: Path) -> Path:
    """``root/<class>/<image>`` with 12 real CIFAR-10 test JPEGs in each of 3 classes."""
    root = tmp_path / "images"
    for name in ("airplane", "cat", "ship"):
        (root / name).mkdir(parents=True)
        for source in sorted((cifar10_root / "test" / name).glob("*.jpg"))[:12]:
            shutil.copy(source, root / name / source.name)
    return root
