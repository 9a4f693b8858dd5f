"""Shared fixtures: every test starts from fixed torch and NumPy seeds, on the CPU."""

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invprotect.data import default_cifar10_root


def pytest_configure(config: pytest.Config) -> None:
    # One intra-op thread per test process: the tests use small tensors, for which more threads
    # mostly add synchronisation, and OpenMP threads spin badly when cores are shared.
    torch.set_num_threads(1)
    config.addinivalue_line(
        "markers",
        "cross_machine: protect and recover in subprocesses on different CPU code paths",
    )
    # Commands run in tests keep it: their --threads default follows $OMP_NUM_THREADS.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


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


@pytest.fixture
def mixed_tree(tmp_path: Path, cifar10_root: Path) -> Path:
    """Real CIFAR-10 JPEGs plus odd sizes and modes, in class folders."""
    root = tmp_path / "src"
    rng = np.random.default_rng(0)
    (root / "cat").mkdir(parents=True)
    (root / "ship").mkdir()
    for source in sorted((cifar10_root / "test" / "cat").glob("*.jpg"))[:3]:
        (root / "cat" / source.name).write_bytes(source.read_bytes())
    photo = np.asarray(Image.open(sorted((cifar10_root / "test" / "ship").glob("*.jpg"))[0]))
    big = np.asarray(Image.fromarray(photo).resize((256, 256), Image.BICUBIC))
    Image.fromarray(big).save(root / "ship" / "big.png")
    Image.fromarray(big[:33, :47]).save(root / "ship" / "odd.png")
    Image.fromarray(big[:30, :30]).convert("L").save(root / "ship" / "gray.png")
    rgba = np.dstack([big[:20, :24], rng.integers(0, 256, (20, 24), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "ship" / "alpha.png")
    Image.fromarray(big[:16, :16]).convert("P", palette=Image.ADAPTIVE, colors=16).save(
        root / "ship" / "palette.png"
    )
    return root
