"""Haar wavelet: orthonormal, exact, documented channel order."""

from __future__ import annotations

import torch

from invprotect.blocks import HaarDownsampling, HaarUpsampling, haar_analysis, haar_synthesis


def test_channel_order_is_wavelet_major_average_horizontal_vertical_diagonal() -> None:
    # Two channels, one 2x2 patch each: [[a, b], [c, d]].
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 0.0], [0.0, 0.0]]]])
    bands = haar_analysis(x).flatten()
    a, b, c, d = 1.0, 2.0, 3.0, 4.0
    expected_first_channel = [
        (a + b + c + d) / 2,  # A, channel 0
        (a + b - c - d) / 2,  # H, channel 2
        (a - b + c - d) / 2,  # V, channel 4
        (a - b - c + d) / 2,  # D, channel 6
    ]
    assert bands[0::2].tolist() == expected_first_channel
    assert bands[1::2].tolist() == [5.0, 5.0, 5.0, 5.0]


def test_haar_is_orthonormal_and_exactly_invertible() -> None:
    x = torch.rand(3, 5, 16, 24, dtype=torch.float64)
    y = haar_analysis(x)
    assert y.shape == (3, 20, 8, 12)
    torch.testing.assert_close(y.square().sum(), x.square().sum())  # energy preserved
    torch.testing.assert_close(haar_synthesis(y), x, atol=1e-15, rtol=0)


def test_up_and_down_modules_are_inverses_with_zero_log_det() -> None:
    x = torch.rand(2, 3, 8, 8)
    (y,), log_det = HaarDownsampling([(3, 8, 8)])([x])
    (x_back,), log_det_up = HaarUpsampling([(12, 4, 4)])([y])
    torch.testing.assert_close(x_back, x, atol=1e-6, rtol=0)
    assert torch.equal(log_det, torch.zeros(2)) and torch.equal(log_det_up, torch.zeros(2))
