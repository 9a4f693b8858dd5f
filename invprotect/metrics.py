"""Image-quality metrics shared by training, evaluation, defences and benchmarks."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr"]


def psnr(a: Tensor, b: Tensor, max_db: float | None = None) -> Tensor:
    """PSNR in dB (peak 1) of each image pair in ``[0, 1]``, shape ``(B,)``.

    Identical pairs give ``inf`` unless ``max_db`` caps the result. Capping inside (the
    mean squared error is floored at ``10 ** (-max_db / 10)``) keeps value and gradient
    finite, which a loss needs; ``.clamp(max=...)`` afterwards would not.
    """
    mse = (a.float() - b.float()).square().flatten(1).mean(1)
    if max_db is not None:
        mse = mse.clamp(min=10.0 ** (-max_db / 10.0))
    return 10.0 * torch.log10(1.0 / mse)
