"""The discriminator of RAEG: tells original images from protected ones (Eq. 6)."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class Discriminator(nn.Module):
    """A spectrally normalised convolutional critic, one logit per image.

    Strided 4x4 convolutions halve the resolution ``depth`` times (LeakyReLU between
    them), then a 1x1 convolution gives a logit map that is averaged over positions,
    so any image size works. Every convolution is spectrally normalised, which keeps
    the critic 1-Lipschitz per layer and the GAN loss of the generator smooth.

    Args:
        channels: Input channels.
        width: Channels of the first layer, doubled at each level (capped at ``8 * width``).
        depth: Number of strided convolutions.

    Shape:
        - Input: ``(B, channels, H, W)``
        - Output: ``(B,)`` logits (positive: "original")
    """

    def __init__(self, channels: int = 3, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be positive, got {depth} and {width}")
        layers: list[nn.Module] = []
        c_in = channels
        for level in range(depth):
            c_out = width * min(2**level, 8)
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers.append(spectral_norm(nn.Conv2d(c_in, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """One logit per image."""
        return self.net(images).mean(dim=(1, 2, 3))
