"""Image-quality metrics shared by training, evaluation, defences and benchmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from pytorch_msssim import ssim as _ssim
from torch import Tensor

__all__ = ["psnr", "psnr_from_mse", "ssim"]


def psnr(a: Tensor, b: Tensor, max_db: float | None = None) -> Tensor:
    """PSNR in dB (peak 1) of each image pair in ``[0, 1]``, shape ``(B,)``.

    Identical pairs give ``inf`` unless ``max_db`` caps the result. Capping inside (the
    mean squared error is floored at ``10 ** (-max_db / 10)``) keeps value and gradient
    finite, which a loss needs; ``.clamp(max=...)`` afterwards would not.
    """
    mse = (a.float() - b.float()).square().flatten(1).mean(1)
    if max_db is not None:
        mse = mse.clamp(min=10.0 ** (-max_db / 10.0))
    return psnr_from_mse(mse)


def psnr_from_mse(mse: Tensor | float) -> Tensor:
    """PSNR in dB (peak 1) of mean squared errors: ``10 * log10(1 / mse)``, elementwise.

    The one place the formula is written; a zero error gives ``inf``. A Python number
    becomes a float64 tensor (take ``.item()`` for a number back).

    Example:
        >>> psnr_from_mse(torch.tensor([0.01, 0.0]))
        tensor([20., inf])
    """
    if not isinstance(mse, Tensor):
        mse = torch.tensor(float(mse), dtype=torch.float64)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """SSIM (pytorch-msssim, Gaussian window) of each image pair in ``[0, 1]``, shape ``(B,)``.

    The window is 11x11, or the largest odd size that fits smaller images; an image with a
    side under 3 pixels is edge-padded to 3 first.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> ssim(x, x)
        tensor([1., 1.])
    """
    a, b = a.float(), b.float()
    pad_h, pad_w = max(0, 3 - a.shape[-2]), max(0, 3 - a.shape[-1])
    if pad_h or pad_w:
        a, b = (F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") for x in (a, b))
    window = min(11, a.shape[-1], a.shape[-2])
    window -= 1 - window % 2  # odd
    return _ssim(a, b, data_range=1.0, size_average=False, win_size=window)
