"""Image-quality metrics shared by training, evaluation, defences and benchmarks."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr"]


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """PSNR in dB (peak 1) of each image pair in ``[0, 1]``, shape ``(B,)``.

    Identical pairs give ``inf``: clamp the result (for example ``.clamp(max=100)``)
    where a finite number is needed.
    """
    mse = (a.float() - b.float()).square().flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)
