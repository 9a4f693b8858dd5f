"""Input validation shared by the invertible blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def single_input(x_or_z: Sequence[Tensor], block: str) -> Tensor:
    """Unpack the one tensor of a FrEIA-style input list.

    Raises:
        ValueError: If ``x_or_z`` is a bare tensor or holds more than one tensor.
    """
    if isinstance(x_or_z, Tensor):
        raise ValueError(
            f"{block} takes a list holding one tensor (FrEIA convention), got a bare tensor; "
            "call it as block([x])"
        )
    if len(x_or_z) != 1:
        raise ValueError(f"{block} takes exactly one input tensor, got {len(x_or_z)}")
    return x_or_z[0]


def check_image_batch(x: Tensor, *, channels: int, side_multiple: int, block: str) -> None:
    """Check that ``x`` is a floating-point ``(B, C, H, W)`` batch the block can process.

    Args:
        x: The tensor to check.
        channels: The channel count the block was built for.
        side_multiple: ``H`` and ``W`` must be divisible by this.
        block: Name of the block, used in the error message.

    Raises:
        ValueError: Naming what was expected and what was received.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{block} expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{block} expected a 4-D tensor (B, C, H, W), "
            f"got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if not torch.is_floating_point(x):
        raise ValueError(
            f"{block} expected a floating-point tensor, got {x.dtype}; "
            "convert 8-bit images with x.float() / 255"
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"{block} was built for {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    height, width = x.shape[-2:]
    if height % side_multiple or width % side_multiple:
        raise ValueError(
            f"{block} expected height and width divisible by {side_multiple}, "
            f"got {height}x{width}; "
            "pad the image first"
        )


def channels_of(dims_in: Sequence[tuple[int, ...]], block: str) -> int:
    """The channel count ``C`` of a FrEIA ``dims_in=[(C, H, W)]``.

    Raises:
        ValueError: If ``dims_in`` is not one ``(C, H, W)`` shape.
    """
    dims = list(dims_in)
    if len(dims) != 1 or len(dims[0]) != 3:
        raise ValueError(f"{block} expected dims_in=[(C, H, W)], got {dims_in!r}")
    return int(dims[0][0])
