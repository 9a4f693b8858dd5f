"""The classic defences: what each one does, and the errors for out-of-range parameters."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from invprotect.defences import (
    JPEG,
    BitDepth,
    GaussianBlur,
    GaussianNoise,
    Grayscale,
    MedianFilter,
    Resize,
    create_defence,
)
from invprotect.metrics import psnr


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("jpeg", {"quality": 0}, "quality must be in 1..100"),
        ("jpeg", {"quality": 101}, "quality must be in 1..100"),
        ("jpeg", {"quality": 50.5}, "must be an integer"),
        ("gaussian_noise", {"sigma": -1.0}, "sigma must be >= 0"),
        ("gaussian_blur", {"sigma": -0.5}, "sigma must be > 0"),
        ("gaussian_blur", {"sigma": 0.0}, "sigma must be > 0"),
        ("gaussian_blur", {"sigma": 1.0, "kernel_size": 4}, "positive odd integer"),
        ("median_filter", {"kernel_size": 4}, "positive odd integer"),
        ("median_filter", {"kernel_size": 0}, "positive odd integer"),
        ("bit_depth", {"bits": 0}, "bits must be in 1..8"),
        ("bit_depth", {"bits": 9}, "bits must be in 1..8"),
        ("resize", {"scale": 0.0}, r"scale must be in \(0, 1\]"),
        ("resize", {"scale": -0.5}, r"scale must be in \(0, 1\]"),
        ("resize", {"scale": 1.5}, r"scale must be in \(0, 1\]"),
        ("resize", {"scale": float("nan")}, "must be finite"),
        ("resize", {"interpolation": "lanczos"}, "interpolation must be one of"),
    ],
)
def test_out_of_range_parameters_raise_value_error(
    name: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        create_defence(name, **kwargs)


def test_jpeg_is_real_libjpeg(images: torch.Tensor) -> None:
    # Same bytes as PIL's libjpeg at the same quality (baseline, 4:2:0): a close match.
    ours = JPEG(quality=75)(images[:1])
    pixels = (images[0] * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
    pil = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255
    assert psnr(ours, pil[None]).item() > 40.0
    scores = [psnr(JPEG(quality=q)(images), images).mean().item() for q in (10, 50, 95)]
    assert scores[0] < scores[1] < scores[2]


def test_resize_interpolations(images: torch.Tensor) -> None:
    assert torch.equal(Resize(scale=1.0)(images), images)
    blocky = images[:, :, ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.equal(Resize(scale=0.5, interpolation="nearest")(blocky), blocky)
    assert torch.equal(Resize(scale=0.5, interpolation="area")(blocky), blocky)
    mild = psnr(Resize(scale=0.75)(images), images).mean()
    harsh = psnr(Resize(scale=0.5)(images), images).mean()
    assert harsh < mild
    for interpolation in ("bilinear", "bicubic", "nearest", "area"):
        out = Resize(scale=0.6, interpolation=interpolation)(images)
        assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1


def test_gaussian_noise_sigma_is_in_8bit_levels() -> None:
    gray = torch.full((4, 3, 64, 64), 128 / 255)
    noisy = GaussianNoise(sigma=8.0)(gray)
    assert abs((noisy - gray).std().item() * 255 - 8.0) < 0.3
    assert torch.equal(GaussianNoise(sigma=0.0)(gray), gray)


def test_median_filter_removes_salt_and_keeps_flat_borders() -> None:
    flat = torch.full((1, 3, 16, 16), 100 / 255)
    salted = flat.clone()
    salted[..., 5, 7] = 1.0
    salted[..., 0, 0] = 1.0  # a corner: zero padding would also darken the border
    assert torch.equal(MedianFilter(kernel_size=3)(salted), flat)
    assert torch.equal(MedianFilter(kernel_size=1)(salted), salted)


def test_gaussian_blur_smooths_and_keeps_flat_images() -> None:
    flat = torch.full((1, 3, 8, 8), 60 / 255)
    assert torch.equal(GaussianBlur(sigma=2.0)(flat), flat)
    assert GaussianBlur(sigma=1.5).kernel_size == 11
    spike = torch.zeros(1, 3, 9, 9)
    spike[..., 4, 4] = 1.0
    blurred = GaussianBlur(sigma=1.0)(spike)
    assert blurred[..., 4, 4].max() < 0.5 and blurred[..., 4, 5].min() > 0


def test_grayscale_is_bt601_luma_replicated(images: torch.Tensor) -> None:
    out = Grayscale()(images)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    weights = torch.tensor([0.299, 0.587, 0.114])
    expected = ((images * weights[:, None, None]).sum(1) * 255).round() / 255
    assert (out[:, 0] - expected).abs().max() <= 1 / 255 + 1e-6
    assert torch.equal(Grayscale()(out), out)


def test_bit_depth_levels(images: torch.Tensor) -> None:
    assert torch.equal(BitDepth(bits=8)(images), images)
    assert set((BitDepth(bits=1)(images) * 255).round().unique().tolist()) <= {0.0, 255.0}
    levels = (BitDepth(bits=3)(images) * 255).round().unique()
    assert len(levels) <= 8
    ramp = torch.arange(256.0).div(255).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    assert (BitDepth(bits=2)(ramp) * 255).round().unique().tolist() == [0.0, 85.0, 170.0, 255.0]
