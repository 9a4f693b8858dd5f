"""The defences share the attacks' operations: one real-JPEG codec, one PSNR formula."""

from __future__ import annotations

import warnings

import torch

from invprotect.attacks import real_jpeg
from invprotect.defences import JPEG, jpeg_compress, patch_psnr
from invprotect.metrics import psnr, psnr_from_mse


def _batched_libjpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """The defence's codec before it was shared: one batched torchvision call."""
    from torchvision.io import decode_jpeg, encode_jpeg

    pixels = images.clamp(0, 1).mul(255).round().to(torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(list(pixels.unbind(0)), quality=quality))
    return torch.stack(decoded).float().div(255)


def test_the_jpeg_defence_is_the_attacks_codec_byte_for_byte() -> None:
    images = torch.rand(3, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    images = images.mul(255).round().div(255)
    for quality in (10, 50, 95):
        expected = _batched_libjpeg(images, quality)
        assert torch.equal(jpeg_compress(images, quality), expected)
        assert torch.equal(real_jpeg(images, quality), expected)
        assert torch.equal(JPEG(quality)(images), expected)
    assert not torch.equal(expected, images)  # the codec really changed the images


def test_psnr_is_written_once() -> None:
    a = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    b = (a + 0.1).clamp(0, 1)
    mse = (a - b).square().flatten(1).mean(1)
    assert torch.allclose(psnr(a, b), 10 * torch.log10(1 / mse))
    assert torch.allclose(psnr_from_mse(mse), psnr(a, b))
    assert psnr_from_mse(0.01).item() == 20.0
    # One patch covering the whole image gives the image's PSNR.
    assert torch.allclose(patch_psnr(a, b, patch_size=8), psnr(a, b))
