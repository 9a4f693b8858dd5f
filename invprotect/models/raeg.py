"""RAEG: the reversible adversarial example generator of Chen et al. (ICME 2022).

The generator is the U-shaped invertible network of `invprotect.blocks`: its forward
pass turns an image into its protected version, its backward pass recovers the
image. The discriminator (used only in training) judges originals against protected
images. A saved RAEG holds the generator's weights: whoever has it can undo the
protection, so it is the key and must be kept as such.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from invprotect.blocks import UNET_PRESETS, InvertibleUNet, UNetConfig
from invprotect.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from invprotect.models.discriminator import Discriminator
from invprotect.models.encoder_decoder import EncoderDecoder
from invprotect.models.protector import Protector

_FORMAT = "invprotect.raeg/1"
ARCHITECTURES = ("invertible", "encoder-decoder")
"""Generators a `RAEGConfig` can name."""


@dataclass(frozen=True)
class RAEGConfig:
    """Architecture of a RAEG protector.

    Attributes:
        generator: The invertible U-Net's settings.
        image_size: Side of the square training images (protection works on any size
            whose sides are multiples of ``2 ** generator.levels``).
        discriminator_width: Channels of the discriminator's first layer.
        discriminator_depth: Strided convolutions in the discriminator.
        architecture: ``"invertible"`` (RAEG) or ``"encoder-decoder"``: the paper's
            ablation, two independent residual U-Nets
            (`invprotect.models.encoder_decoder.EncoderDecoder`) of
            ``generator.levels`` levels and ``generator.hidden_channels // 2`` channels
            (about the invertible generator's parameter count).
    """

    generator: UNetConfig = field(default_factory=UNetConfig)
    image_size: int = 256
    discriminator_width: int = 32
    discriminator_depth: int = 3
    architecture: str = "invertible"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (inverse of `from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RAEGConfig:
        """Rebuild a config from `to_dict`'s output."""
        values = dict(data)
        values["generator"] = UNetConfig(**values.get("generator", {}))
        return cls(**values)


RAEG_PRESETS: dict[str, RAEGConfig] = {
    "paper": RAEGConfig(generator=UNET_PRESETS["paper"], image_size=256),
    "cpu-32": RAEGConfig(generator=UNET_PRESETS["cpu"], image_size=32, discriminator_width=16),
}
"""``paper``: 256x256 with the paper's generator (3 levels of 4 DSAC blocks), for a GPU;
``cpu-32``: 32x32 with the lighter ``cpu`` generator, trainable on a laptop CPU."""


class RAEG(nn.Module, Protector):
    """The RAEG protector: an invertible generator plus its training discriminator.

    Args:
        config: Architecture; see `RAEGConfig` and `RAEG_PRESETS`.
        metadata: JSON-serialisable facts stored with the weights (training data,
            targets, measured PSNR and accuracy, ...).

    Example:
        >>> raeg = RAEG.from_preset("cpu-32").eval()
        >>> x = torch.rand(2, 3, 32, 32)
        >>> torch.allclose(raeg.recover(raeg.protect(x)), x, atol=1e-5)
        True
    """

    def __init__(self, config: RAEGConfig, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.generator: InvertibleUNet | EncoderDecoder
        if config.architecture == "invertible":
            self.generator = InvertibleUNet(
                [(3, config.image_size, config.image_size)], **asdict(config.generator)
            )
        else:
            width = max(4, config.generator.hidden_channels // 2)
            self.generator = EncoderDecoder(3, width, config.generator.levels)
        self.discriminator = Discriminator(
            3, config.discriminator_width, config.discriminator_depth
        )
        self.metadata: dict[str, Any] = dict(metadata or {})
        # Channels-last convolutions run about twice as fast on CPUs (oneDNN).
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> RAEG:
        """A fresh (untrained: identity) RAEG from `RAEG_PRESETS`.

        Raises:
            ValueError: For an unknown preset.
        """
        if preset not in RAEG_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(RAEG_PRESETS)}")
        config = RAEG_PRESETS[preset]
        if overrides:
            config = RAEGConfig.from_dict({**config.to_dict(), **overrides})
        return cls(config)

    @property
    def side_multiple(self) -> int:
        """Image sides must be multiples of this (``2 ** levels``)."""
        return self.generator.side_multiple

    def generate(self, images: Tensor) -> Tensor:
        """The generator's forward pass, unclipped (for training losses)."""
        return self.generator.transform(_channels_last(images)).contiguous()

    def protect(self, images: Tensor) -> Tensor:
        """Protected images in ``[0, 1]`` (the forward pass, clipped)."""
        return self.generate(images).clamp(0.0, 1.0)

    def recover(self, images: Tensor) -> Tensor:
        """Recovered images in ``[0, 1]`` (the backward pass, clipped)."""
        return self.generator.inverse(_channels_last(images)).contiguous().clamp(0.0, 1.0)

    def save(self, path: str | Path) -> Path:
        """Write ``weights.safetensors`` (generator and discriminator) and ``config.json``."""
        config = {"format": _FORMAT, "config": self.config.to_dict(), "metadata": self.metadata}
        return save_checkpoint(path, self.state_dict(), config)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> RAEG:
        """Load a protector saved by `save`, in ``eval()`` mode.

        Raises:
            CheckpointError: If ``path`` is not a RAEG checkpoint (or is a pickle).
        """
        tensors, settings = load_checkpoint(path)
        if settings.get("format") != _FORMAT:
            raise CheckpointError(
                f"{path} is not a RAEG protector (format {settings.get('format')!r})"
            )
        model = cls(RAEGConfig.from_dict(settings["config"]), settings.get("metadata"))
        try:
            model.load_state_dict(tensors)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: weights do not match the config: {error}") from None
        return model.to(device).eval()


def _channels_last(images: Tensor) -> Tensor:
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images
