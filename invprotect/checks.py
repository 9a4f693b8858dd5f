"""Checks of image tensors at a module's boundary, shared by every wing.

Each check raises an error whose message names the caller (``owner``), what was
expected, what was received and what to do. The wings compose them: the blocks check
a floating ``(B, C, H, W)`` batch, the attacks an optionally RGB one, the defences and
the embedding baselines RGB images in ``[0, 1]`` on the 8-bit grid.

Example:
    >>> import torch
    >>> check_images("demo", torch.rand(2, 3, 8, 8), channels=3, unit_range=True)
    >>> check_images("demo", torch.rand(2, 8, 8))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: demo: expected a 4-D tensor (B, C, H, W), got 3-D with shape (2, 8, 8); ...
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "GRID_TOLERANCE",
    "ImageTypeError",
    "check_8bit_grid",
    "check_images",
    "check_side_multiple",
    "check_uint8_images",
    "check_unit_range",
]

GRID_TOLERANCE = 1e-3
"""How far (in 8-bit levels) a value may be from ``k / 255`` and still be on the grid."""


class ImageTypeError(TypeError, ValueError):
    """An image argument is not a tensor, or not of the expected dtype.

    A `TypeError`, and also a `ValueError`, so that callers written against either
    (the wings raised one or the other before they shared these checks) still catch it.
    """


def check_images(
    owner: str,
    x: object,
    *,
    channels: int | None = None,
    unit_range: bool = False,
    non_empty: bool = False,
) -> None:
    """Check a floating-point image batch ``(B, C, H, W)``.

    Args:
        owner: Who checks (a function, module or argument name), for the message.
        x: The value to check.
        channels: The channel count required (``3``: RGB); ``None`` accepts any.
        unit_range: Whether every value must lie in ``[0, 1]`` (see `check_unit_range`).
        non_empty: Whether the batch must hold at least one image with pixels.

    Raises:
        ImageTypeError: If ``x`` is not a floating-point tensor.
        ValueError: If it is not 4-D, has another channel count, is empty where it must
            not be, or (with ``unit_range``) leaves ``[0, 1]``.
    """
    if not isinstance(x, Tensor):
        raise ImageTypeError(f"{owner}: expected a torch.Tensor of images, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ImageTypeError(
            f"{owner}: expected a floating-point tensor in [0, 1], got {x.dtype}; "
            "convert 8-bit images with x.float() / 255"
        )
    layout = f"(B, {channels}, H, W)"
    if x.dim() != 4:
        which = "" if channels is None else f" with C = {channels}, {layout}"
        raise ValueError(
            f"{owner}: expected a 4-D tensor (B, C, H, W){which}, got {x.dim()}-D with shape "
            f"{tuple(x.shape)}; add a batch dimension with x[None]"
        )
    if channels is not None and x.shape[1] != channels:
        hint = "; convert to RGB (repeat a grey channel three times)" if channels == 3 else ""
        kind = "RGB images " if channels == 3 else ""
        raise ValueError(
            f"{owner}: expected {kind}{layout}, got {x.shape[1]} channels "
            f"(shape {tuple(x.shape)}){hint}"
        )
    if non_empty and x.numel() == 0:
        raise ValueError(
            f"{owner}: expected at least one image with pixels, got shape {tuple(x.shape)}"
        )
    if unit_range:
        check_unit_range(owner, x)


def check_unit_range(owner: str, x: Tensor) -> None:
    """Check that every value of ``x`` lies in ``[0, 1]`` (an empty tensor passes).

    Raises:
        ValueError: With the range received.
    """
    if x.numel() == 0:
        return
    low, high = x.min().item(), x.max().item()
    if not (0.0 <= low and high <= 1.0):
        raise ValueError(
            f"{owner}: expected values in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "clamp them or divide 8-bit values by 255"
        )


def check_8bit_grid(
    owner: str, x: Tensor, fix: str = "invprotect.defences.to_8bit_grid(x)"
) -> None:
    """Check that every value of ``x`` is within `GRID_TOLERANCE` levels of some ``k / 255``.

    Args:
        owner: Who checks, for the message.
        x: Float tensor.
        fix: The call the message suggests for rounding.

    Raises:
        ValueError: With the largest distance to the grid, in 8-bit levels.
    """
    if x.numel() == 0:
        return
    levels = x.detach() * 255.0
    off = (levels - levels.round()).abs().max().item()
    if off > GRID_TOLERANCE:
        raise ValueError(
            f"{owner}: expected values on the 8-bit grid (k/255), but a value is {off:.3g} "
            f"levels away from it; round with {fix} first"
        )


def check_side_multiple(owner: str, x: Tensor, multiple: int) -> None:
    """Check that the height and width of ``x`` are multiples of ``multiple``.

    Raises:
        ValueError: With the size received.
    """
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{owner}: expected height and width divisible by {multiple}, got "
            f"{height}x{width}; pad the image first"
        )


def check_uint8_images(owner: str, x: object) -> None:
    """Check a non-empty ``uint8`` RGB batch ``(B, 3, H, W)``.

    Raises:
        ImageTypeError: If ``x`` is not a ``torch.uint8`` tensor.
        ValueError: For another shape.
    """
    if not isinstance(x, Tensor) or x.dtype != torch.uint8:
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ImageTypeError(f"{owner}: expected a torch.uint8 tensor, got {kind}")
    if x.ndim != 4 or x.shape[1] != 3 or x.numel() == 0:
        raise ValueError(
            f"{owner}: expected shape (B, 3, H, W) with B >= 1 (RGB), got {tuple(x.shape)}"
        )
