"""Double-side affine coupling (DSAC), Eq. (1)/(2) of the RAEG paper."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from FrEIA.modules import InvertibleModule
from torch import Tensor

from invprotect.blocks._checks import channels_of, check_image_batch, single_input
from invprotect.blocks.subnets import SubnetConstructor, subnet_constructor


class DSACBlock(InvertibleModule):
    """Double-side affine coupling block.

    The input is split along channels into ``x1`` (the first ``split_len`` channels)
    and ``x2`` (the rest). Both halves are transformed, the second from the already
    updated first (Eq. 1), and the inverse undoes them in the opposite order:

    ```text
    forward:  y1 = x1 * exp(s1(x2)) + t1(x2)        inverse:  x2 = (y2 - t2(y1)) * exp(-s2(y1))
              y2 = x2 * exp(s2(y1)) + t2(y1)                  x1 = (y1 - t1(x2)) * exp(-s1(x2))
    ```

    (The paper's Eq. (2) prints ``exp(+theta)`` in the inverse; dividing by the
    scale, as here, is the actual inverse of Eq. (1).) One subnet per side outputs
    both the log-scale and the shift (``2 * channels`` outputs, split in half). The
    log-scale is soft-clamped, ``s = clamp * tanh(raw / clamp)``, so every scale lies
    in ``(exp(-clamp), exp(clamp))``. The forward log-determinant is the per-sample
    sum of ``s1`` and ``s2``; the reverse pass returns its negation. With
    zero-initialised subnets the block starts as the identity.

    Args:
        dims_in: ``[(C, H, W)]`` with ``C >= 2``; ``H`` and ``W`` are nominal.
        dims_c: Unused; no conditioning.
        subnet: A registered subnet name or a constructor ``(c_in, c_out) -> nn.Module``.
        split_len: Channels in ``x1``; ``None`` means ``C // 2``.
        clamp: Bound of the soft-clamped log-scales (positive).
        hidden_channels: Hidden width of a named subnet (``None`` keeps its default).

    Shape:
        - Input: ``[(B, C, H, W)]``
        - Output: ``((B, C, H, W),)`` and a log-det of shape ``(B,)``

    Example:
        >>> block = DSACBlock([(4, 8, 8)], subnet="conv", hidden_channels=8)
        >>> (y,), log_det = block([torch.rand(2, 4, 8, 8)])
        >>> y.shape, log_det.shape
        (torch.Size([2, 4, 8, 8]), torch.Size([2]))
    """

    def __init__(
        self,
        dims_in: Sequence[tuple[int, ...]],
        dims_c: Sequence | None = None,
        subnet: str | SubnetConstructor = "resnet_sn",
        split_len: int | None = None,
        clamp: float = 2.0,
        hidden_channels: int | None = None,
    ) -> None:
        super().__init__(dims_in, dims_c)
        channels = channels_of(dims_in, "DSACBlock")
        if channels < 2:
            raise ValueError(f"DSACBlock needs at least 2 channels to split, got {channels}")
        split_len = channels // 2 if split_len is None else split_len
        if not 0 < split_len < channels:
            raise ValueError(
                f"DSACBlock split_len must be in [1, {channels - 1}] for {channels} channels, "
                f"got {split_len}"
            )
        if not clamp > 0:
            raise ValueError(f"DSACBlock clamp must be positive, got {clamp}")
        self.channels = channels
        self.split_len = split_len
        self.clamp = float(clamp)
        constructor = subnet_constructor(subnet, hidden_channels=hidden_channels)
        rest = channels - split_len
        self.subnet1 = constructor(rest, 2 * split_len)
        self.subnet2 = constructor(split_len, 2 * rest)

    def _scale_shift(self, subnet: torch.nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        raw_log_scale, shift = subnet(x).chunk(2, dim=1)
        return self.clamp * torch.tanh(raw_log_scale / self.clamp), shift

    def forward(
        self,
        x_or_z: Sequence[Tensor],
        c: Sequence[Tensor] | None = None,
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[tuple[Tensor], Tensor]:
        """Apply Eq. (1) (``rev=False``) or its inverse (``rev=True``)."""
        x = single_input(x_or_z, "DSACBlock")
        check_image_batch(x, channels=self.channels, side_multiple=1, block="DSACBlock")
        a, b = x[:, : self.split_len], x[:, self.split_len :]
        if not rev:
            s1, t1 = self._scale_shift(self.subnet1, b)
            a = a * torch.exp(s1) + t1
            s2, t2 = self._scale_shift(self.subnet2, a)
            b = b * torch.exp(s2) + t2
            sign = 1.0
        else:
            s2, t2 = self._scale_shift(self.subnet2, a)
            b = (b - t2) * torch.exp(-s2)
            s1, t1 = self._scale_shift(self.subnet1, b)
            a = (a - t1) * torch.exp(-s1)
            sign = -1.0
        log_det = sign * (s1.flatten(1).sum(1) + s2.flatten(1).sum(1))
        return (torch.cat([a, b], dim=1),), log_det

    def output_dims(self, input_dims: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Same as the input: ``[(C, H, W)]``."""
        return [tuple(input_dims[0])]
