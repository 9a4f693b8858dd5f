"""DIPDefend: fitting, adaptive stopping, batching and settings."""

from __future__ import annotations

import pytest
import torch

from invprotect.defences import DIPDefend, patch_psnr, sample_generators
from invprotect.metrics import psnr

FAST = {"channels": (8, 16), "input_channels": 4}


@pytest.mark.slow
def test_fit_improves_and_stopping_keeps_the_smoothed_maximum(images: torch.Tensor) -> None:
    defence = DIPDefend(max_iterations=200, smoothing=0.05, warmup=5, patience=10, **FAST)
    result = defence.reconstruct(images[:3])
    iterations = result.fit_curves.shape[0]
    assert result.fit_curves.shape == result.smoothed_curves.shape == (iterations, 3)
    assert (result.fit_curves[-1] > result.fit_curves[0] + 3).all()  # the fit improves
    assert torch.isnan(result.smoothed_curves[:5]).all()  # smoothing starts after warm-up
    for i in range(3):
        kept, stopped = result.kept_iterations[i].item(), result.stopped_iterations[i].item()
        smoothed = result.smoothed_curves[5 : stopped + 1, i]
        assert 5 <= kept <= stopped < 200
        assert result.smoothed_curves[kept, i] == smoothed.max()  # kept at the maximum
        assert stopped - kept == 10  # stopped after `patience` iterations without a new one
    assert iterations == result.stopped_iterations.max().item() + 1  # the batch stopped early
    # The kept image is the reconstruction whose fit was recorded at that iteration.
    kept_fit = patch_psnr(result.images, images[:3])
    recorded = result.fit_curves[result.kept_iterations, torch.arange(3)]
    assert torch.allclose(kept_fit, recorded, atol=1e-3)


def test_budget_exhausted_keeps_the_latest_maximum(images: torch.Tensor) -> None:
    result = DIPDefend(max_iterations=8, warmup=3, patience=50, **FAST).reconstruct(images[:2])
    assert result.fit_curves.shape[0] == 8
    assert result.stopped_iterations.tolist() == [7, 7]
    assert (result.kept_iterations >= 3).all()


def test_batch_invariance_with_per_image_generators(images: torch.Tensor) -> None:
    defence = DIPDefend(max_iterations=10, warmup=3, patience=3, **FAST)
    keys = [str(i) for i in range(4)]
    together = defence(images[:4], sample_generators(0, keys))
    alone = torch.cat(
        [defence(images[i : i + 1], sample_generators(0, keys[i : i + 1])) for i in range(4)]
    )
    assert torch.equal(together, alone)


def test_odd_and_tiny_sizes_are_padded_and_cropped(images: torch.Tensor) -> None:
    defence = DIPDefend(max_iterations=5, warmup=2, patience=2, **FAST)
    for height, width in ((13, 10), (3, 5), (1, 1)):
        out = defence(images[:1, :, :height, :width])
        assert out.shape == (1, 3, height, width)


def test_patch_psnr_is_the_worst_patch() -> None:
    a = torch.zeros(1, 3, 64, 64)
    b = a.clone()
    b[..., 40:, 40:] = 0.1  # only the bottom-right 32x32 patch differs (partly)
    worst = patch_psnr(a, b, 32)
    assert worst.item() == pytest.approx(psnr(a[..., 32:, 32:], b[..., 32:, 32:]).item())
    assert patch_psnr(a, b, 128).item() == pytest.approx(psnr(a, b).item())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_iterations": 0},
        {"learning_rate": 0.0},
        {"channels": ()},
        {"smoothing": 0.0},
        {"smoothing": 1.5},
        {"patience": 0},
        {"warmup": 0},
        {"input_noise_std": -1.0},
    ],
)
def test_out_of_range_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="out-of-range"):
        DIPDefend(**kwargs)
