"""PSNR: per image, infinite for identical images unless capped, finite gradient when capped."""

from __future__ import annotations

import math

import torch

from invprotect.metrics import psnr


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
