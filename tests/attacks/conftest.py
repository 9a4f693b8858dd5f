"""Fixtures of the attack tests: small random batches and real CIFAR-10 test images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image


def load_cifar10_test(root: Path, count: int) -> torch.Tensor:
    """``count`` test images spread evenly over the sorted file list, float in [0, 1]."""
    files = sorted((root / "test").glob("*/*.jpg"))
    assert len(files) >= count, f"need {count} JPEGs under {root / 'test'}; found {len(files)}"
    chosen = files[:: len(files) // count][:count]
    return torch.stack([decode_image(str(path)) for path in chosen]).float() / 255


@pytest.fixture(scope="session")
def cifar_images(cifar10_root: Path) -> torch.Tensor:
    """64 real CIFAR-10 test images ``(64, 3, 32, 32)`` covering all classes.

    The folder comes from the shared ``cifar10_root`` fixture: ``$INVPROTECT_CIFAR10`` or
    ``../shared/datasets/cifar10``.
    """
    return load_cifar10_test(cifar10_root, 64)


@pytest.fixture
def images() -> torch.Tensor:
    """A small random RGB batch ``(3, 3, 24, 32)`` (sides not multiples of 16)."""
    return torch.rand(3, 3, 24, 32, generator=torch.Generator().manual_seed(11))


_TORCHVISION_IO_DEPRECATION = (
    "ignore:The image decoding and encoding capabilities of TorchVision are deprecated"
    ":DeprecationWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Silence torchvision's deprecation of ``torchvision.io`` JPEG codecs in these tests.

    ``jpeg_ste`` and ``real_jpeg`` use ``torchvision.io.encode_jpeg``/``decode_jpeg``,
    which torchvision 0.29 deprecates in favour of TorchCodec; every call warns.
    """
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings(_TORCHVISION_IO_DEPRECATION))
