"""Integer-to-integer invertible blocks: a lifting Haar transform and additive couplings.

On tensors that hold integers (8-bit levels, not ``[0, 1]`` values), these blocks give
integers back, and their inverses give the same integers back exactly: every step
adds to one part of the tensor an integer computed from the other part, and the
inverse subtracts the same integer. So a network of them protects an image into
integer levels that recover the original with no residual at all; only clipping to
``0..255`` loses anything (`invprotect.models.exact` stores that overflow).

The integers come from rounding (``floor`` in the lifting steps, ``round`` of the
subnets' outputs). In training they pass gradients straight through (the gradient of
the rounded value is taken as that of the value itself); with ``rounding = False`` a
block computes its continuous relaxation instead, the function whose gradients the
straight-through estimator uses. Either way the blocks are volume-preserving: the
log-determinant is exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from FrEIA.modules import InvertibleModule
from torch import Tensor

from invprotect.blocks._checks import channels_of, check_image_batch, single_input
from invprotect.blocks.haar import Downsampling, Upsampling
from invprotect.blocks.subnets import SubnetConstructor, subnet_constructor

SHIFT_LIMIT = 2.0**15
"""Largest shift (in levels) a coupling adds: keeps every value an exact float32 integer."""
LEVEL_UNIT = 1.0 / 255.0
"""Default scale from levels to the subnets' inputs (and back): 8-bit levels to ``[0, 1]``."""

_Rounding = Callable[[Tensor], Tensor]


def straight_through(rounding: _Rounding, x: Tensor) -> Tensor:
    """``rounding(x)`` whose gradient is that of ``x`` (the straight-through estimator)."""
    return x + (rounding(x) - x).detach()


def lifting_analysis(x: Tensor, rounding: bool = True) -> Tensor:
    """One level of the integer 2-D Haar transform (the S-transform by lifting steps).

    Each 2x2 patch ``[[a, b], [c, d]]`` of integers becomes four integers: ``A`` (the
    patch's mean, rounded down), ``H`` (top row minus bottom row, of the rows' means),
    ``V`` and ``D`` (the same for the rows' differences), wavelet-major as in
    `invprotect.blocks.haar.haar_analysis`. With ``rounding=False`` the halvings are
    not rounded (the relaxation).

    Args:
        x: Images ``(B, C, H, W)`` with even ``H`` and ``W``.
        rounding: Round the halvings down (straight-through gradients).
    """
    half = _halving(rounding)
    a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    top_diff, bottom_diff = a - b, c - d
    top_mean, bottom_mean = b + half(top_diff), d + half(bottom_diff)
    horizontal, diagonal = top_mean - bottom_mean, top_diff - bottom_diff
    average = bottom_mean + half(horizontal)
    vertical = bottom_diff + half(diagonal)
    return torch.cat([average, horizontal, vertical, diagonal], dim=1)


def lifting_synthesis(y: Tensor, rounding: bool = True) -> Tensor:
    """The inverse of `lifting_analysis`: exact on integers, whatever their size below 2**23."""
    half = _halving(rounding)
    average, horizontal, vertical, diagonal = y.chunk(4, dim=1)
    bottom_mean = average - half(horizontal)
    top_mean = horizontal + bottom_mean
    bottom_diff = vertical - half(diagonal)
    top_diff = diagonal + bottom_diff
    b = top_mean - half(top_diff)
    d = bottom_mean - half(bottom_diff)
    a, c = top_diff + b, bottom_diff + d
    batch, channels, height, width = average.shape
    out = y.new_empty(batch, channels, 2 * height, 2 * width)
    out[:, :, 0::2, 0::2], out[:, :, 0::2, 1::2] = a, b
    out[:, :, 1::2, 0::2], out[:, :, 1::2, 1::2] = c, d
    return out


def _halving(rounding: bool) -> _Rounding:
    if rounding:
        return lambda v: straight_through(torch.floor, v * 0.5)
    return lambda v: v * 0.5


class _Lifting:
    """The lifting transform as a `Downsampling` or `Upsampling` block's transforms."""

    rounding = True

    def analysis(self, x: Tensor) -> Tensor:
        """`lifting_analysis`."""
        return lifting_analysis(x, self.rounding)

    def synthesis(self, y: Tensor) -> Tensor:
        """`lifting_synthesis`."""
        return lifting_synthesis(y, self.rounding)


class LiftingDownsampling(_Lifting, Downsampling):
    """Integer Haar downsampling, ``(C, H, W) -> (4C, H/2, W/2)`` (`lifting_analysis`).

    The integer counterpart of `invprotect.blocks.haar.HaarDownsampling`: the same
    sub-bands in the same order, but ``A`` is the patch's mean (not twice it) and the
    details are differences (not halved), so integers stay integers. Log-det zero.

    Args:
        dims_in: ``[(C, H, W)]``; ``H`` and ``W`` are nominal (any even size is accepted).
        dims_c: Unused; no conditioning.

    Attributes:
        rounding: ``False`` computes the continuous relaxation (see the module docstring).

    Example:
        >>> block = LiftingDownsampling([(1, 2, 2)])
        >>> (y,), _ = block([torch.tensor([[[[10.0, 7.0], [4.0, 1.0]]]])])
        >>> y.flatten().tolist()
        [5.0, 6.0, 3.0, 0.0]
        >>> (back,), _ = block([y], rev=True)
        >>> back.flatten().tolist()
        [10.0, 7.0, 4.0, 1.0]
    """


class LiftingUpsampling(_Lifting, Upsampling):
    """Integer Haar upsampling, ``(4C, H, W) -> (C, 2H, 2W)``: `LiftingDownsampling` reversed.

    Args:
        dims_in: ``[(4C, H, W)]``; the channel count must be divisible by 4.
        dims_c: Unused; no conditioning.

    Attributes:
        rounding: ``False`` computes the continuous relaxation (see the module docstring).
    """


class AdditiveCouplingBlock(InvertibleModule):
    """Double-side additive coupling on integers: DSAC without scales, shifts rounded.

    ```text
    forward:  y1 = x1 + [t1(x2)]        inverse:  x2 = y2 - [t2(y1)]
              y2 = x2 + [t2(y1)]                  x1 = y1 - [t1(x2)]
    ```

    ``[t]`` is ``t`` rounded to an integer and bounded by `SHIFT_LIMIT`; the subnets
    see their input times ``unit`` and their output is divided by it, so with 8-bit
    levels they work on ``[0, 1]`` values as a DSAC block's do. Integers in, integers
    out, and the inverse subtracts exactly what the forward pass added (for any input,
    not only integers). Log-det zero; with zero-initialised subnets the identity.

    Args:
        dims_in: ``[(C, H, W)]`` with ``C >= 2``; ``H`` and ``W`` are nominal.
        dims_c: Unused; no conditioning.
        subnet: A registered subnet name or a constructor ``(c_in, c_out) -> nn.Module``.
        split_len: Channels in ``x1``; ``None`` means ``C // 2``.
        hidden_channels: Hidden width of a named subnet (``None`` keeps its default).
        unit: Scale of the subnets' inputs (levels to their units).

    Attributes:
        rounding: ``False`` computes the continuous relaxation (see the module docstring).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> block = AdditiveCouplingBlock([(4, 8, 8)], subnet="conv", hidden_channels=8)
        >>> with torch.no_grad():
        ...     _ = [w.normal_(0, 0.5) for w in block.parameters()]
        ...     x = torch.randint(0, 256, (2, 4, 8, 8)).float()
        ...     (y,), log_det = block([x])
        ...     (back,), _ = block([y], rev=True)
        >>> bool(torch.equal(y, y.round())), bool((y != x).any()), bool(torch.equal(back, x))
        (True, True, True)
    """

    def __init__(
        self,
        dims_in: Sequence[tuple[int, ...]],
        dims_c: Sequence | None = None,
        subnet: str | SubnetConstructor = "resnet_sn",
        split_len: int | None = None,
        hidden_channels: int | None = None,
        unit: float = LEVEL_UNIT,
    ) -> None:
        super().__init__(dims_in, dims_c)
        channels = channels_of(dims_in, "AdditiveCouplingBlock")
        if channels < 2:
            raise ValueError(
                f"AdditiveCouplingBlock needs at least 2 channels to split, got {channels}"
            )
        split_len = channels // 2 if split_len is None else split_len
        if not 0 < split_len < channels:
            raise ValueError(
                f"AdditiveCouplingBlock split_len must be in [1, {channels - 1}] for "
                f"{channels} channels, got {split_len}"
            )
        if not unit > 0:
            raise ValueError(f"AdditiveCouplingBlock unit must be positive, got {unit}")
        self.channels = channels
        self.split_len = split_len
        self.unit = float(unit)
        self.rounding = True
        constructor = subnet_constructor(subnet, hidden_channels=hidden_channels)
        self.subnet1 = constructor(channels - split_len, split_len)
        self.subnet2 = constructor(split_len, channels - split_len)

    def _shift(self, subnet: torch.nn.Module, x: Tensor) -> Tensor:
        shift = (subnet(x * self.unit) / self.unit).clamp(-SHIFT_LIMIT, SHIFT_LIMIT)
        return straight_through(torch.round, shift) if self.rounding else shift

    def forward(
        self,
        x_or_z: Sequence[Tensor],
        c: Sequence[Tensor] | None = None,
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[tuple[Tensor], Tensor]:
        """Add the rounded shifts (``rev=False``) or subtract them (``rev=True``)."""
        x = single_input(x_or_z, "AdditiveCouplingBlock")
        check_image_batch(x, channels=self.channels, side_multiple=1, block="AdditiveCouplingBlock")
        a, b = x[:, : self.split_len], x[:, self.split_len :]
        if not rev:
            a = a + self._shift(self.subnet1, b)
            b = b + self._shift(self.subnet2, a)
        else:
            b = b - self._shift(self.subnet2, a)
            a = a - self._shift(self.subnet1, b)
        return (torch.cat([a, b], dim=1),), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    def output_dims(self, input_dims: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Same as the input: ``[(C, H, W)]``."""
        return [tuple(input_dims[0])]
