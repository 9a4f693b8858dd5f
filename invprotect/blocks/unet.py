"""The U-shaped invertible network of RAEG: Haar and DSAC blocks, or their integer kin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from FrEIA.modules import InvertibleModule
from torch import Tensor, nn

from invprotect._registry import Presets
from invprotect.blocks._checks import channels_of, check_image_batch, single_input
from invprotect.blocks.coupling import DSACBlock
from invprotect.blocks.haar import HaarDownsampling, HaarUpsampling
from invprotect.blocks.integer import (
    AdditiveCouplingBlock,
    LiftingDownsampling,
    LiftingUpsampling,
    straight_through,
)

COUPLINGS = ("affine", "integer")
"""What `UNetConfig.coupling` may name."""


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of `InvertibleUNet`.

    Attributes:
        levels: Number of downscaling modules (and of upscaling modules).
        blocks_per_level: DSAC blocks in each module (the paper's N).
        subnet: Registered subnet name used in every DSAC block.
        hidden_channels: Hidden width of every subnet.
        clamp: Soft clamp of the DSAC log-scales.
        split_fraction: Fraction of the channels in the first half of each DSAC split.
        coupling: ``"affine"``: Haar and DSAC blocks, as in RAEG; ``"integer"``: lifting
            Haar and additive couplings on 8-bit levels (`invprotect.blocks.integer`), so
            that 8-bit images go to integer levels and back exactly.
    """

    levels: int = 3
    blocks_per_level: int = 4
    subnet: str = "resnet_sn"
    hidden_channels: int = 64
    clamp: float = 2.0
    split_fraction: float = 0.5
    coupling: str = "affine"

    def __post_init__(self) -> None:
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if not isinstance(self.levels, int) or self.levels < 1:
            raise ValueError(f"levels must be a positive int, got {self.levels!r}")
        if not isinstance(self.blocks_per_level, int) or self.blocks_per_level < 1:
            raise ValueError(
                f"blocks_per_level must be a positive int, got {self.blocks_per_level!r}"
            )
        if not 0.0 < self.split_fraction < 1.0:
            raise ValueError(f"split_fraction must be in (0, 1), got {self.split_fraction!r}")


UNET_PRESETS: Presets[UNetConfig] = Presets(
    "InvertibleUNet",
    UNetConfig,
    {
        "paper": UNetConfig(levels=3, blocks_per_level=4, hidden_channels=64),
        "cpu": UNetConfig(levels=3, blocks_per_level=2, hidden_channels=24),
    },
)
"""Named configurations: ``paper`` (3 levels of 4 DSAC blocks, as in RAEG) and
``cpu`` (3 levels of 2 narrower blocks, sized for training at 32x32 on a CPU)."""


class InvertibleUNet(InvertibleModule):
    """U-shaped invertible network: image in, image-shaped out.

    ``levels`` downscaling modules (Haar downsampling, then ``blocks_per_level`` DSAC
    blocks) followed by ``levels`` upscaling modules (``blocks_per_level`` DSAC
    blocks, then Haar upsampling). With three levels an RGB image travels as
    ``3 -> 12 -> 48 -> 192`` channels at ``1/2, 1/4, 1/8`` resolution and back. The
    paper does not specify skip connections; here the path is purely sequential, so
    the network is a FrEIA module like any other and nests in ``SequenceINN``.

    The network is fully convolutional: any height and width divisible by
    ``2 ** levels`` is accepted, whatever the nominal ``dims_in``.

    With ``coupling="integer"`` the blocks are `LiftingDownsampling`,
    `AdditiveCouplingBlock` and `LiftingUpsampling`: the input is rounded to 8-bit
    levels (``round(255 x)``), the blocks map integers to integers, and the output is
    levels divided by 255, so an 8-bit image's protected levels are integers whose
    inverse is the image exactly (gradients pass the roundings straight through).

    Args:
        dims_in: ``[(C, H, W)]``; ``C`` is fixed, ``H`` and ``W`` are nominal.
        dims_c: Unused; no conditioning.
        levels: See `UNetConfig`.
        blocks_per_level: See `UNetConfig`.
        subnet: See `UNetConfig`.
        hidden_channels: See `UNetConfig`.
        clamp: See `UNetConfig`.
        split_fraction: See `UNetConfig`.
        coupling: See `UNetConfig`.

    Example:
        A fresh network is the identity; with random weights it is still exactly
        invertible, and its log-determinant is no longer zero:

        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> net = InvertibleUNet([(3, 32, 32)], levels=2, blocks_per_level=1, hidden_channels=8)
        >>> net = net.eval()  # spectral norm updates in train mode
        >>> with torch.no_grad():
        ...     for weight in net.parameters():
        ...         _ = weight.add_(0.01 * torch.randn_like(weight))
        ...     x = torch.rand(2, 3, 32, 32)
        ...     (y,), log_det = net([x])
        >>> bool((y - x).abs().mean() > 0.01), bool(torch.all(log_det != 0))
        (True, True)
        >>> torch.allclose(net.inverse(y), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        dims_in: Sequence[tuple[int, ...]],
        dims_c: Sequence | None = None,
        levels: int = 3,
        blocks_per_level: int = 4,
        subnet: str = "resnet_sn",
        hidden_channels: int = 64,
        clamp: float = 2.0,
        split_fraction: float = 0.5,
        coupling: str = "affine",
    ) -> None:
        super().__init__(dims_in, dims_c)
        self.config = UNetConfig(
            levels, blocks_per_level, subnet, hidden_channels, clamp, split_fraction, coupling
        )
        self.integer = coupling == "integer"
        down, up = (
            (LiftingDownsampling, LiftingUpsampling)
            if self.integer
            else (HaarDownsampling, HaarUpsampling)
        )
        self.channels = channels_of(dims_in, "InvertibleUNet")
        self.side_multiple = 2**levels
        _, height, width = next(iter(dims_in))
        blocks: list[InvertibleModule] = []
        shape = (self.channels, height, width)
        for _ in range(levels):
            blocks.append(down([shape]))
            shape = blocks[-1].output_dims([shape])[0]
            blocks.extend(self._couplings(shape))
        for _ in range(levels):
            blocks.extend(self._couplings(shape))
            blocks.append(up([shape]))
            shape = blocks[-1].output_dims([shape])[0]
        self.blocks = nn.ModuleList(blocks)

    def _couplings(self, shape: tuple[int, ...]) -> list[InvertibleModule]:
        cfg = self.config
        split_len = min(max(1, round(shape[0] * cfg.split_fraction)), shape[0] - 1)
        if self.integer:
            return [
                AdditiveCouplingBlock(
                    [shape],
                    subnet=cfg.subnet,
                    split_len=split_len,
                    hidden_channels=cfg.hidden_channels,
                )
                for _ in range(cfg.blocks_per_level)
            ]
        return [
            DSACBlock(
                [shape],
                subnet=cfg.subnet,
                split_len=split_len,
                clamp=cfg.clamp,
                hidden_channels=cfg.hidden_channels,
            )
            for _ in range(cfg.blocks_per_level)
        ]

    @classmethod
    def from_preset(
        cls, preset: str, dims_in: Sequence[tuple[int, ...]] = ((3, 32, 32),), **overrides: Any
    ) -> InvertibleUNet:
        """Build a network from a named preset in `UNET_PRESETS`.

        Args:
            preset: ``"paper"`` or ``"cpu"``.
            dims_in: ``[(C, H, W)]`` of the images.
            **overrides: Fields of `UNetConfig` to change (``None`` values ignored).

        Raises:
            ValueError: For an unknown preset or an invalid override.
        """
        base = UNET_PRESETS[preset]
        fields = sorted(asdict(base))
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"unknown UNetConfig fields {unknown}; valid: {fields}")
        config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
        return cls(dims_in, **asdict(config))

    def forward(
        self,
        x_or_z: Sequence[Tensor],
        c: Sequence[Tensor] | None = None,
        rev: bool = False,
        jac: bool = True,
    ) -> tuple[tuple[Tensor], Tensor]:
        """Run the network forward (``rev=False``) or backward (``rev=True``)."""
        x = single_input(x_or_z, "InvertibleUNet")
        check_image_batch(
            x, channels=self.channels, side_multiple=self.side_multiple, block="InvertibleUNet"
        )
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self.integer:
            x = x * 255.0
            if self.rounding:
                x = straight_through(torch.round, x)
        out = (x,)
        for block in reversed(self.blocks) if rev else self.blocks:
            out, block_log_det = block(out, rev=rev, jac=jac)
            log_det = log_det + block_log_det
        if self.integer:
            out = (out[0] / 255.0,)
        return out, log_det

    @property
    def rounding(self) -> bool:
        """Whether an integer network rounds (``False``: its continuous relaxation)."""
        return all(getattr(block, "rounding", True) for block in self.blocks)

    @rounding.setter
    def rounding(self, value: bool) -> None:
        for block in self.blocks:
            if hasattr(block, "rounding"):
                block.rounding = value

    def transform(self, x: Tensor) -> Tensor:
        """Forward pass on an image batch, log-determinant dropped."""
        return self.forward([x], jac=False)[0][0]

    def inverse(self, y: Tensor) -> Tensor:
        """Backward pass on an image batch, log-determinant dropped."""
        return self.forward([y], rev=True, jac=False)[0][0]

    def output_dims(self, input_dims: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Same as the input: ``[(C, H, W)]``."""
        return [tuple(input_dims[0])]
