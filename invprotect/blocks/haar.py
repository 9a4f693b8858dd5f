"""Orthonormal Haar wavelet down- and upsampling as FrEIA invertible modules."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from einops import rearrange
from FrEIA.modules import InvertibleModule
from torch import Tensor

from invprotect.blocks._checks import channels_of, check_image_batch, single_input

# Rows: the four sub-bands (A, H, V, D); columns: the 2x2 patch pixels in
# row-major order (top-left, top-right, bottom-left, bottom-right).
_HAAR = 0.5 * torch.tensor(
    [
        [1.0, 1.0, 1.0, 1.0],  # A: average (low-pass)
        [1.0, 1.0, -1.0, -1.0],  # H: top minus bottom (horizontal edges)
        [1.0, -1.0, 1.0, -1.0],  # V: left minus right (vertical edges)
        [1.0, -1.0, -1.0, 1.0],  # D: diagonal
    ]
)


def haar_analysis(x: Tensor) -> Tensor:
    """One level of the orthonormal 2-D Haar transform.

    Args:
        x: Images of shape ``(B, C, H, W)`` with even ``H`` and ``W``.

    Returns:
        Sub-bands of shape ``(B, 4C, H/2, W/2)`` in wavelet-major order: channels
            ``[0, C)`` hold the averages (A), then ``C`` channels each of H, V and D.
    """
    patches = rearrange(x, "b c (h p) (w q) -> b (p q) c h w", p=2, q=2)
    bands = torch.einsum("kj,bjchw->bkchw", _HAAR.to(dtype=x.dtype, device=x.device), patches)
    return rearrange(bands, "b k c h w -> b (k c) h w")


def haar_synthesis(y: Tensor) -> Tensor:
    """Inverse of `haar_analysis` (the transform is orthonormal and symmetric)."""
    bands = rearrange(y, "b (k c) h w -> b k c h w", k=4)
    patches = torch.einsum("kj,bkchw->bjchw", _HAAR.to(dtype=y.dtype, device=y.device), bands)
    return rearrange(patches, "b (p q) c h w -> b c (h p) (w q)", p=2, q=2)


def _zero_log_det(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


class Downsampling(InvertibleModule, ABC):
    """Base of the wavelet downsamplings, ``(C, H, W) -> (4C, H/2, W/2)``, log-det zero.

    A subclass gives the transform (`analysis`) and its inverse (`synthesis`); this class
    checks the shapes and never modifies its input in place.

    Args:
        dims_in: ``[(C, H, W)]``; ``H`` and ``W`` are nominal (any even size is accepted).
        dims_c: Unused; no conditioning.
    """

    def __init__(self, dims_in: Sequence[tuple[int, ...]], dims_c: Sequence | None = None) -> None:
        super().__init__(dims_in, dims_c)
        self.channels = channels_of(dims_in, type(self).__name__)

    @abstractmethod
    def analysis(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, 4C, H/2, W/2)``."""

    @abstractmethod
    def synthesis(self, y: Tensor) -> Tensor:
        """The inverse of `analysis`."""

    def forward(
        self,
        x_or_z: Sequence[Tensor],
        c: Sequence[Tensor] | None = None,
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[tuple[Tensor], Tensor]:
        """Downsample (``rev=False``) or upsample back (``rev=True``)."""
        name = type(self).__name__
        x = single_input(x_or_z, name)
        if rev:
            check_image_batch(x, channels=4 * self.channels, side_multiple=1, block=name)
            return (self.synthesis(x),), _zero_log_det(x)
        check_image_batch(x, channels=self.channels, side_multiple=2, block=name)
        return (self.analysis(x),), _zero_log_det(x)

    def output_dims(self, input_dims: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """``[(4C, H/2, W/2)]``."""
        c, h, w = input_dims[0]
        return [(4 * c, h // 2, w // 2)]


class Upsampling(InvertibleModule, ABC):
    """Base of the inverse wavelet transforms, ``(4C, H, W) -> (C, 2H, 2W)``, log-det zero.

    A subclass gives the transform (`synthesis`) and its inverse (`analysis`), in the
    wavelet-major channel order of its `Downsampling`.

    Args:
        dims_in: ``[(4C, H, W)]``; the channel count must be divisible by 4.
        dims_c: Unused; no conditioning.
    """

    def __init__(self, dims_in: Sequence[tuple[int, ...]], dims_c: Sequence | None = None) -> None:
        super().__init__(dims_in, dims_c)
        name = type(self).__name__
        channels = channels_of(dims_in, name)
        if channels % 4:
            raise ValueError(f"{name} expected a channel count divisible by 4, got {channels}")
        self.channels = channels

    @abstractmethod
    def analysis(self, x: Tensor) -> Tensor:
        """``(B, C, 2H, 2W) -> (B, 4C, H, W)``: the inverse of `synthesis`."""

    @abstractmethod
    def synthesis(self, y: Tensor) -> Tensor:
        """``(B, 4C, H, W) -> (B, C, 2H, 2W)``."""

    def forward(
        self,
        x_or_z: Sequence[Tensor],
        c: Sequence[Tensor] | None = None,
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[tuple[Tensor], Tensor]:
        """Upsample (``rev=False``) or downsample back (``rev=True``)."""
        name = type(self).__name__
        x = single_input(x_or_z, name)
        if rev:
            check_image_batch(x, channels=self.channels // 4, side_multiple=2, block=name)
            return (self.analysis(x),), _zero_log_det(x)
        check_image_batch(x, channels=self.channels, side_multiple=1, block=name)
        return (self.synthesis(x),), _zero_log_det(x)

    def output_dims(self, input_dims: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """``[(C/4, 2H, 2W)]``."""
        c, h, w = input_dims[0]
        return [(c // 4, 2 * h, 2 * w)]


class HaarDownsampling(Downsampling):
    """Orthonormal Haar wavelet downsampling, ``(C, H, W) -> (4C, H/2, W/2)``.

    Each 2x2 patch ``[[a, b], [c, d]]`` becomes four coefficients:

    ```text
    A = (a + b + c + d) / 2    average (low-pass)
    H = (a + b - c - d) / 2    top minus bottom (horizontal edges)
    V = (a - b + c - d) / 2    left minus right (vertical edges)
    D = (a - b - c + d) / 2    diagonal
    ```

    The output is wavelet-major: channels ``[0, C)`` are A (a half-resolution copy of
    the image, scaled by 2), then H, V and D with ``C`` channels each. The transform
    is orthonormal, so its log-determinant is exactly zero, and it never modifies its
    input in place.

    Args:
        dims_in: ``[(C, H, W)]``; ``H`` and ``W`` are nominal (any even size is accepted).
        dims_c: Unused; no conditioning.

    Shape:
        - Input: ``[(B, C, H, W)]``
        - Output: ``((B, 4C, H/2, W/2),)`` and a log-det of shape ``(B,)``
    """

    def analysis(self, x: Tensor) -> Tensor:
        """`haar_analysis`."""
        return haar_analysis(x)

    def synthesis(self, y: Tensor) -> Tensor:
        """`haar_synthesis`."""
        return haar_synthesis(y)


class HaarUpsampling(Upsampling):
    """Inverse Haar wavelet transform, ``(4C, H, W) -> (C, 2H, 2W)``.

    The exact inverse of `HaarDownsampling`, expecting the same wavelet-major
    channel order. Log-determinant zero; never modifies its input in place.

    Args:
        dims_in: ``[(4C, H, W)]``; the channel count must be divisible by 4.
        dims_c: Unused; no conditioning.

    Shape:
        - Input: ``[(B, 4C, H, W)]``
        - Output: ``((B, C, 2H, 2W),)`` and a log-det of shape ``(B,)``
    """

    def analysis(self, x: Tensor) -> Tensor:
        """`haar_analysis`."""
        return haar_analysis(x)

    def synthesis(self, y: Tensor) -> Tensor:
        """`haar_synthesis`."""
        return haar_synthesis(y)
