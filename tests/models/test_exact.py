"""Bit-exact recovery through 8-bit protected images, PNG files and the residual."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invprotect.data import load_image_set, scan_image_folder
from invprotect.files.png import encode_png, read_chunks
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from tests.contracts import train_away_from_identity


@pytest.fixture(scope="module")
def raeg() -> RAEG:
    torch.manual_seed(0)
    model = RAEG.from_preset("cpu-32")
    train_away_from_identity(
        model.generator, lambda: torch.rand(4, 3, 32, 32), forward=model.generate
    )
    return model.eval()


@pytest.fixture(scope="module")
def originals(cifar10_root: Path) -> torch.Tensor:
    index = scan_image_folder(cifar10_root / "test")
    index.samples = index.samples[::500]  # 20 images, 2 per class
    return load_image_set(index).images


def _to_8bit(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def test_recovery_through_png_files_is_bit_exact(raeg: RAEG, originals: torch.Tensor) -> None:
    codec = ExactCodec(raeg)
    with torch.no_grad():
        protected = _to_8bit(raeg.protect(originals.float() / 255))
    clipped = (raeg.generate(originals.float() / 255) > 1).any().item()
    residuals = codec.residuals(originals, protected)
    files = [
        encode_png(image.permute(1, 2, 0).numpy(), {b"ipRS": blob})
        for image, blob in zip(protected, residuals, strict=True)
    ]
    decoded = torch.stack(
        [torch.from_numpy(np.array(Image.open(io.BytesIO(f)))).permute(2, 0, 1) for f in files]
    )
    assert torch.equal(decoded, protected)
    blobs = [read_chunks(f)[b"ipRS"] for f in files]
    restored = codec.restore(decoded, blobs)
    assert torch.equal(restored, originals)
    plain = codec.predict(decoded)
    assert not torch.equal(plain, originals)  # without the residual recovery is not exact
    assert clipped  # the trained generator leaves [0, 1], so clipping is covered too


@pytest.mark.slow
def test_prediction_does_not_depend_on_batch_or_threads(
    raeg: RAEG, originals: torch.Tensor
) -> None:
    codec = ExactCodec(raeg)
    protected = _to_8bit(raeg.protect(originals.float() / 255).detach())
    together = codec.predict(protected)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one_by_one = torch.cat([codec.predict(p[None]) for p in protected])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(together, one_by_one)


def test_corrupt_residuals_are_refused(raeg: RAEG, originals: torch.Tensor) -> None:
    import zlib

    codec = ExactCodec(raeg)
    protected = _to_8bit(raeg.protect(originals[:2].float() / 255).detach())
    with pytest.raises(ValueError, match="residual holds"):
        codec.restore(protected, [zlib.compress(b"\x00\x00"), zlib.compress(b"\x00\x00")])
    bomb = zlib.compress(bytes(200 * protected[0].numel()), 9)  # inflates 100x past its image
    with pytest.raises(ValueError, match="residual holds more than"):
        codec.restore(protected[:1], [bomb])
    with pytest.raises(ValueError, match="corrupt"):
        codec.restore(protected[:1], [b"\x78\x9c garbage"])
    with pytest.raises(ValueError, match="uint8"):
        codec.predict(protected.float())
