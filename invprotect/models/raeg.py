"""RAEG: the reversible adversarial example generator of Chen et al. (ICME 2022).

The generator is the U-shaped invertible network of `invprotect.blocks`: its forward
pass turns an image into its protected version, its backward pass recovers the
image. The discriminator (used only in training) judges originals against protected
images. A saved RAEG holds the generator's weights only (the training state keeps the
discriminator): whoever has it can undo the protection, so it is the key and must be
kept as such. Keys saved with their discriminator, as earlier versions did, still load.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from invprotect._registry import Presets
from invprotect.blocks import (
    UNET_PRESETS,
    InvertibleUNet,
    UNetConfig,
    is_subnet,
    list_subnets,
)
from invprotect.checkpoint import CheckpointError, load_module, save_checkpoint
from invprotect.models.discriminator import Discriminator
from invprotect.models.encoder_decoder import EncoderDecoder
from invprotect.models.exact import ExactCodec
from invprotect.models.poison import TargetedPoison
from invprotect.models.protector import Checkpoint, Protector, register_protector

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
    def from_dict(cls, data: Any) -> RAEGConfig:
        """Rebuild a config from `to_dict`'s output, checking every field.

        Raises:
            ValueError: If ``data`` is not such a mapping: a key unknown or missing, a
                value of the wrong type, or sizes out of `LIMITS` (a hand-edited or
                foreign ``config.json``).
        """
        values = _checked_fields(data, cls, "RAEG config")
        saved = values["generator"]
        if isinstance(saved, dict) and "coupling" not in saved:  # keys older than the field
            saved = {**saved, "coupling": "affine"}
        generator = _checked_fields(saved, UNetConfig)
        if not is_subnet(generator["subnet"]):
            raise ValueError(
                f"generator field 'subnet' names no registered subnet: {generator['subnet']!r}; "
                f"registered: {', '.join(list_subnets())}"
            )
        values["generator"] = UNetConfig(**generator)
        return cls(**values)

    def minimum_parameters(self, discriminator: bool = True) -> int:
        """A lower bound on the values this architecture holds (weights and buffers).

        Cheap to compute (nothing is built): `RAEG.load` refuses a ``config.json`` whose
        network would need more values than its ``weights.safetensors`` holds, before
        allocating anything. Counted: every DSAC block's subnets read all ``3 * 4**l``
        channels of their level into ``hidden_channels`` (the encoder-decoder's strided
        convolutions, for that ablation), and, with ``discriminator``, the
        discriminator's convolutions exactly.
        """
        gen = self.generator
        if self.architecture == "invertible":
            per_level = [3 * 4**level * gen.hidden_channels for level in range(1, gen.levels + 1)]
            generator = 2 * gen.blocks_per_level * sum(per_level)
        else:
            width = max(4, gen.hidden_channels // 2)
            widths = [width * 2**level for level in range(gen.levels + 1)]
            generator = 2 * sum(a * b * 9 for a, b in itertools.pairwise(widths))
        c_in, critic = 3, 0
        for level in range(self.discriminator_depth if discriminator else 0):
            c_out = self.discriminator_width * min(2**level, 8)
            critic += c_in * c_out * 16
            c_in = c_out
        return generator + critic


LIMITS: dict[str, tuple[int, int]] = {
    "image_size": (2, 16384),
    "discriminator_width": (1, 1024),
    "discriminator_depth": (1, 12),
    "levels": (1, 8),
    "blocks_per_level": (1, 64),
    "hidden_channels": (1, 4096),
}
"""Inclusive ranges of the integer fields a loaded config may hold."""


def _checked_fields(data: Any, kind: type, name: str = "generator") -> dict[str, Any]:
    """The fields of dataclass ``kind`` from ``data``, every key present and of its type."""
    if not isinstance(data, dict):
        raise ValueError(f"the {name} must be a JSON object, got {type(data).__name__}")
    expected = {item.name: item.type for item in fields(kind)}
    unknown, missing = sorted(set(data) - set(expected)), sorted(set(expected) - set(data))
    if unknown or missing:
        raise ValueError(
            f"the {name} does not match this version of invprotect: "
            f"unknown keys {unknown}, missing keys {missing}; expected {sorted(expected)}"
        )
    for key, value in data.items():
        wanted = _JSON_TYPES.get(expected[key], dict)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ValueError(
                f"{name} field {key!r} must be {expected[key]}, got {value!r} "
                f"({type(value).__name__})"
            )
        if key in LIMITS and not LIMITS[key][0] <= value <= LIMITS[key][1]:
            low, high = LIMITS[key]
            raise ValueError(f"{name} field {key!r} must be in [{low}, {high}], got {value}")
    return dict(data)


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "UNetConfig": dict,
}


RAEG_PRESETS: Presets[RAEGConfig] = Presets(
    "RAEG",
    RAEGConfig,
    {
        "paper": RAEGConfig(generator=UNET_PRESETS["paper"], image_size=256),
        "cpu-32": RAEGConfig(generator=UNET_PRESETS["cpu"], image_size=32, discriminator_width=16),
        "paper-integer": RAEGConfig(
            generator=replace(UNET_PRESETS["paper"], coupling="integer"), image_size=256
        ),
        "cpu-32-integer": RAEGConfig(
            generator=replace(UNET_PRESETS["cpu"], coupling="integer"),
            image_size=32,
            discriminator_width=16,
        ),
    },
)
"""``paper``: 256x256 with the paper's generator (3 levels of 4 DSAC blocks), for a GPU;
``cpu-32``: 32x32 with the lighter ``cpu`` generator, trainable on a laptop CPU; the
``-integer`` twins of both: the same sizes with integer-to-integer blocks (lifting Haar
and additive couplings), whose protection runs the network once and whose records hold
only the clipped overflow (`invprotect.models.exact`)."""


@register_protector("invprotect.raeg/1")
class RAEG(nn.Module, Protector):
    """The RAEG protector: an invertible generator plus its training discriminator.

    In files, the record of each image carries `ExactCodec`'s compact residual, which
    repairs what 8-bit rounding destroyed, so recovery is bit for bit. The record keys
    derive from the SHA-256 of the generator's weights (whoever holds them holds the key).

    Args:
        config: Architecture; see `RAEGConfig` and `RAEG_PRESETS`.
        metadata: JSON-serialisable facts stored with the weights (training data,
            targets, measured PSNR and accuracy, ...).

    Example:
        A fresh RAEG is the identity; with random weights it changes the image and
        still inverts it (away from the clip at 0 and 1):

        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> raeg = RAEG.from_preset("cpu-32").eval()
        >>> with torch.no_grad():
        ...     for weight in raeg.generator.parameters():
        ...         _ = weight.add_(0.003 * torch.randn_like(weight))
        ...     x = 0.25 + 0.5 * torch.rand(2, 3, 32, 32)
        ...     protected = raeg.protect(x)
        >>> bool((protected - x).abs().mean() > 0.01)
        True
        >>> torch.allclose(raeg.recover(protected), x, atol=1e-5)
        True
    """

    def __init__(self, config: RAEGConfig, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.poison: TargetedPoison | None = None
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

        Args:
            preset: A name of `RAEG_PRESETS`.
            **overrides: Fields of `RAEGConfig` to change; ``generator`` may be a
                `UNetConfig` or a dict of its fields (the others take their defaults).

        Raises:
            ValueError: For an unknown preset.
        """
        config = RAEG_PRESETS[preset]
        if overrides:
            generator = overrides.pop("generator", config.generator)
            if isinstance(generator, dict):  # fields not given take UNetConfig's defaults
                generator = UNetConfig(**generator)
            config = replace(config, generator=generator, **overrides)
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

    @property
    def device(self) -> torch.device:
        """Where the generator's weights are."""
        return next(self.generator.parameters()).device

    def key_material(self) -> bytes:
        """SHA-256 of the generator's weights (names and bytes, in name order)."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.generator.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.digest()

    def describe(self) -> dict[str, Any]:
        """``kind`` ``"raeg"``, the config and the metadata."""
        return {"kind": "raeg", "config": self.config.to_dict(), "metadata": self.metadata}

    @property
    def recovery_error_bound(self) -> float:
        """``0``: the residual in each record makes recovery bit for bit."""
        return 0.0

    @property
    def poisons(self) -> bool:
        """Whether `encode` refines images with a targeted poison (`use_poison`)."""
        return self.poison is not None

    def use_poison(self, poison: TargetedPoison | None) -> None:
        """Refine every protected image with ``poison`` (``None``: the network's images alone).

        Recovery needs nothing more: the residual codes the original against the refined
        image, so files protected with or without a poison recover with the same key.
        """
        self.poison = poison

    @torch.no_grad()
    def encode(
        self, originals: Tensor, labels: Sequence[str | None] | None = None
    ) -> tuple[Tensor, list[bytes]]:
        """Protected 8-bit images and their residuals (see `ExactCodec.encode`).

        With a poison (`use_poison`), the network's images are refined by it first; it
        pushes each image from its class in ``labels`` (a name, or ``None`` for the
        class its classifiers see: `TargetedPoison.refine`).
        """
        refine = None if self.poison is None else partial(self.poison.refine, labels=labels)
        return ExactCodec(self).encode(originals, refine)

    def decode(self, protected: Tensor, records: list[bytes]) -> tuple[Tensor, list[bool]]:
        """The originals, bit for bit, from protected 8-bit images and their residuals.

        Raises:
            ValueError: If a residual does not fit its image (a corrupt record).
        """
        return ExactCodec(self).restore(protected, records), [True] * protected.shape[0]

    def save(self, path: str | Path) -> Path:
        """Write ``weights.safetensors`` (the generator only) and ``config.json``: the key."""
        config = {
            "format": self.checkpoint_format,
            "config": self.config.to_dict(),
            "metadata": self.metadata,
        }
        generator = {
            name: tensor
            for name, tensor in self.state_dict().items()
            if name.startswith("generator.")
        }
        return save_checkpoint(path, generator, config)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, device: torch.device | str | None = None
    ) -> RAEG:
        """The RAEG of a checkpoint already read, in ``eval()`` mode (see `load`).

        The config is checked before anything is built: every field present and of its
        type, sizes within `LIMITS`, and no more network than the weights file holds
        (`RAEGConfig.minimum_parameters`). A key saved with its discriminator (as earlier
        versions did) loads it too; without one, the discriminator keeps its
        initialisation (it is used only in training).

        Raises:
            CheckpointError: If the config is malformed or does not fit the weights.
        """
        path, tensors, settings = checkpoint.path, checkpoint.tensors, checkpoint.settings
        try:
            config = RAEGConfig.from_dict(settings.get("config"))
            if config.image_size % 2**config.generator.levels:
                raise ValueError(
                    f"image_size {config.image_size} is not a multiple of 2 ** levels "
                    f"({2**config.generator.levels})"
                )
        except ValueError as error:
            raise CheckpointError(f"{path}/config.json: {error}") from None
        metadata = settings.get("metadata")
        if not isinstance(metadata, dict | None):
            raise CheckpointError(f"{path}/config.json: metadata must be a JSON object")
        with_critic = any(name.startswith("discriminator.") for name in tensors)
        needed = config.minimum_parameters(discriminator=with_critic)
        held = sum(tensor.numel() for tensor in tensors.values())
        if needed > held:
            raise CheckpointError(
                f"{path}: config.json describes a network of at least {needed:,} values, "
                f"but weights.safetensors holds {held:,}; the config does not belong to "
                "these weights"
            )
        model = cls(config, metadata)
        if with_critic:
            load_module(model, tensors, path, "the config")
        else:
            generator = _without_prefix(tensors, "generator.")
            load_module(model.generator, generator, path, "the config")
        return model.to(device).eval()


def _without_prefix(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """``tensors`` with ``prefix`` cut from every name (names without it are kept whole)."""
    return {name.removeprefix(prefix): tensor for name, tensor in tensors.items()}


def _channels_last(images: Tensor) -> Tensor:
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images
