"""Input validation shared by the invertible blocks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from invprotect import checks


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
    checks.check_images(block, x)
    if x.shape[1] != channels:
        raise ValueError(
            f"{block} was built for {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    checks.check_side_multiple(block, x, side_multiple)


def channels_of(dims_in: Sequence[tuple[int, ...]], block: str) -> int:
    """The channel count ``C`` of a FrEIA ``dims_in=[(C, H, W)]``.

    Raises:
        ValueError: If ``dims_in`` is not one ``(C, H, W)`` shape.
    """
    dims = list(dims_in)
    if len(dims) != 1 or len(dims[0]) != 3:
        raise ValueError(f"{block} expected dims_in=[(C, H, W)], got {dims_in!r}")
    return int(dims[0][0])
