"""Pictures of image batches: rows side by side, and differences made visible."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

DIFFERENCE_GAIN = 10.0
"""How much the difference row of the grid amplifies ``protected - original`` around gray."""


def image_grid(rows: list[Tensor], scale: int | None = None) -> Image.Image:
    """Rows of images side by side, as one RGB picture, enlarged with nearest neighbours.

    Args:
        rows: Float ``(N, 3, H, W)`` images in ``[0, 1]``, one tensor per row, all of
            one shape.
        scale: Enlargement factor; default ``max(1, 96 // H)`` (3 for 32-pixel images).

    Raises:
        ValueError: If there is no row, or the rows differ in shape.

    Example:
        >>> image_grid([torch.zeros(8, 3, 32, 32), torch.ones(8, 3, 32, 32)]).size
        (768, 192)
    """
    if not rows:
        raise ValueError("image_grid needs at least one row of images")
    shapes = {tuple(row.shape) for row in rows}
    if len(shapes) != 1 or len(rows[0].shape) != 4 or rows[0].shape[1] != 3:
        raise ValueError(f"rows must all be (N, 3, H, W) of one shape, got {sorted(shapes)}")
    height = rows[0].shape[-2]
    scale = scale or max(1, 96 // height)
    grid = torch.cat([torch.cat(list(row.detach().cpu().float()), dim=2) for row in rows], dim=1)
    pixels = grid.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def amplified_difference(images: Tensor, reference: Tensor) -> Tensor:
    """``images - reference`` amplified `DIFFERENCE_GAIN` times around gray, in ``[0, 1]``."""
    return ((images - reference) * DIFFERENCE_GAIN + 0.5).clamp(0, 1)
