"""PSNR and SSIM per image: PSNR infinite for identical images unless capped (finite gradient
when capped), SSIM 1 for identical images of any size."""

from __future__ import annotations

import math

import pytest
import torch

from invprotect.metrics import psnr, ssim


def test_psnr_per_image_and_identical_images() -> None:
    a = torch.zeros(2, 3, 4, 4)
    b = a.clone()
    b[1] += 0.1  # MSE 0.01 -> 20 dB
    values = psnr(a, b)
    assert math.isinf(values[0]) and abs(values[1].item() - 20.0) < 1e-4


def test_capped_psnr_has_a_finite_value_and_gradient() -> None:
    a = torch.rand(2, 3, 4, 4, requires_grad=True)
    values = psnr(a, a.detach(), max_db=100.0)
    assert torch.allclose(values, torch.full((2,), 100.0))
    torch.relu(30.0 - values).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_ssim_is_one_for_identical_images_and_falls_with_noise() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    noise = torch.randn_like(x)
    weak, strong = ((x + sigma * noise).clamp(0, 1) for sigma in (0.02, 0.2))
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert (ssim(strong, x) < ssim(weak, x)).all() and (ssim(weak, x) < 1).all()


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (2, 7), (5, 3)])
def test_ssim_takes_images_of_any_size(size: tuple[int, int]) -> None:
    x = torch.rand(1, 3, *size)
    assert ssim(x, x).shape == (1,)
    assert ssim(x, x).item() == pytest.approx(1.0)
