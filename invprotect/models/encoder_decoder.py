"""The paper's ablation generator: a separate encoder and decoder instead of one invertible net.

Table 4 of Chen et al. (2022) compares RAEG's invertible U-Net with "G using Enc-Dec
architecture": protection and recovery modelled independently by two ordinary networks.
`EncoderDecoder` is that alternative, with the same interface as
`invprotect.blocks.InvertibleUNet` (``transform``, ``inverse``, ``side_multiple``) so that
`invprotect.models.RAEG` and its training loop use either. Each half is a convolutional
U-Net predicting a residual added to its input (both start near the identity); nothing
ties the decoder to the encoder but training, which is the point of the comparison.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ResidualUNet(nn.Module):
    """A convolutional U-Net that returns ``x + residual(x)``.

    Args:
        channels: Image channels.
        width: Feature channels at full resolution (doubled at each level).
        levels: Strided downsamplings (sides must be multiples of ``2 ** levels``).
    """

    def __init__(self, channels: int, width: int, levels: int) -> None:
        super().__init__()
        widths = [width * 2**level for level in range(levels + 1)]
        self.stem = _conv_block(channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1),
                _conv_block(widths[i + 1], widths[i + 1]),
            )
            for i in range(levels)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in reversed(range(levels))
        )
        self.merge = nn.ModuleList(
            _conv_block(2 * widths[i], widths[i]) for i in reversed(range(levels))
        )
        self.head = nn.Conv2d(widths[0], channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # start as the identity
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` plus the predicted residual."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        features = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            features = merge(torch.cat([up(features), skips.pop()], dim=1))
        return x + self.head(features)


class EncoderDecoder(nn.Module):
    """Two independent residual U-Nets: ``transform`` protects, ``inverse`` recovers.

    Args:
        channels: Image channels.
        width: Feature channels of each U-Net at full resolution.
        levels: Downsamplings of each U-Net.

    Example:
        >>> net = EncoderDecoder(3, 8, 2)
        >>> x = torch.rand(1, 3, 16, 16)
        >>> torch.equal(net.transform(x), x) and torch.equal(net.inverse(x), x)
        True
    """

    def __init__(self, channels: int, width: int, levels: int) -> None:
        super().__init__()
        self.encoder = ResidualUNet(channels, width, levels)
        self.decoder = ResidualUNet(channels, width, levels)
        self.side_multiple = 2**levels

    def transform(self, x: Tensor) -> Tensor:
        """The protected image (the encoder)."""
        return self.encoder(x)

    def inverse(self, y: Tensor) -> Tensor:
        """The recovered image (the decoder)."""
        return self.decoder(y)


def _conv_block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(outputs, outputs, 3, padding=1),
        nn.LeakyReLU(0.2),
    )
