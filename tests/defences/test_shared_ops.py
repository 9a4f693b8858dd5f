"""The defences share the attacks' operations: one real-JPEG codec, one PSNR formula.

The references below are the defences' own implementations from before they were built
on the attack operations; the shared operations must give the same bytes.
"""

from __future__ import annotations

import math
import warnings

import kornia
import pytest
import torch

from invprotect.attacks import gaussian_blur as attack_blur
from invprotect.attacks import median_blur as attack_median
from invprotect.attacks import real_jpeg
from invprotect.defences import (
    JPEG,
    BitDepth,
    GaussianBlur,
    Grayscale,
    MedianFilter,
    jpeg_compress,
    patch_psnr,
    to_8bit_grid,
)
from invprotect.metrics import psnr, psnr_from_mse


def _border(kernel: int, height: int, width: int) -> str:
    return "reflect" if kernel // 2 < min(height, width) else "replicate"


def _old_median(images: torch.Tensor, kernel: int) -> torch.Tensor:
    if kernel == 1:
        return images.clone()
    border = _border(kernel, *images.shape[-2:])
    return kornia.filters.median_blur(images, kernel, border_type=border)


def _old_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    kernel = 2 * math.ceil(3.0 * sigma) + 1
    border = _border(kernel, *images.shape[-2:])
    return kornia.filters.gaussian_blur2d(images, (kernel, kernel), (sigma, sigma), border)


def _old_grayscale(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor((0.299, 0.587, 0.114), dtype=images.dtype)
    return torch.einsum("bchw,c->bhw", images, weights)[:, None].expand(-1, 3, -1, -1).clone()


def _old_bit_depth(images: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    return images.mul(levels).round().div(levels)


@pytest.mark.parametrize("size", [(32, 32), (17, 23), (5, 40), (2, 3), (1, 1)])
def test_the_defences_built_on_attack_ops_give_the_same_bytes(size: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(sum(size))
    images = torch.rand(5, 3, *size, generator=generator).mul(255).round().div(255)
    cases = [(MedianFilter(k), lambda x, k=k: _old_median(x, k)) for k in (1, 3, 5, 7)]
    cases += [(GaussianBlur(s), lambda x, s=s: _old_blur(x, s)) for s in (0.5, 1.0, 2.5)]
    cases += [(BitDepth(b), lambda x, b=b: _old_bit_depth(x, b)) for b in (1, 3, 4, 8)]
    cases += [(Grayscale(), _old_grayscale)]
    for defence, old in cases:
        assert torch.equal(defence(images), to_8bit_grid(old(images))), defence


def test_the_filter_attacks_accept_images_smaller_than_their_kernel() -> None:
    tiny = torch.rand(2, 3, 2, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(attack_median(tiny, 5), _old_median(tiny, 5))
    assert torch.allclose(attack_blur(tiny, 1.0, 7), _old_blur(tiny, 1.0))


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
