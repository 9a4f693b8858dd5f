"""The one contract every protector shares (RAEG and the baselines), and their registry.

A protector works on float images and on files. On float RGB ``(B, 3, H, W)`` in
``[0, 1]`` it protects and recovers (`Protector.protect`, `Protector.recover`). For the
folder pipeline (`invprotect.files`) it turns 8-bit originals into 8-bit protected
images plus per-image record bytes, and back (`Protector.encode`, `Protector.decode`,
`Protector.approximate`). The 8-bit methods have a default on the base: the float
methods on the 8-bit grid, no record bytes, recovery flagged approximate. A protector
that can do better overrides them: `RAEG` stores a residual that makes recovery exact;
the baselines read what recovery needs from the pixels.

Each protector derives its record keys from secret material (`Protector.key_material`,
`Protector.keys`, `Protector.key_id`), saves itself as a checkpoint directory
(`Protector.save`) and loads with one signature, ``Cls.load(path, device=None)``.

`register_protector` registers a protector class under its checkpoint format at its
definition; `invprotect.protectors.load_protector` reads a checkpoint once and hands it
to the class registered for its ``format``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import torch
from torch import Tensor

from invprotect._registry import Registry
from invprotect.checkpoint import CheckpointError, load_checkpoint

if TYPE_CHECKING:
    from invprotect.models.poison import TargetedPoison
    from invprotect.record import RecordKeys

__all__ = [
    "PROTECTORS",
    "Checkpoint",
    "Protector",
    "list_protector_formats",
    "register_protector",
]


class Protector(abc.ABC):
    """A reversible image protector; the saved protector is the key that recovers the originals.

    Float images are RGB ``(B, 3, H, W)`` in ``[0, 1]``; 8-bit images are ``uint8``
    ``(B, 3, H, W)`` on the CPU whose sides are multiples of `side_multiple` (the folder
    pipeline pads and crops). Outputs of the float methods live on the inputs' device.

    Subclasses implement the abstract members and are registered with
    `register_protector`, which sets `checkpoint_format`.
    """

    checkpoint_format: ClassVar[str]
    """The ``format`` field of the protector's ``config.json`` (set by `register_protector`)."""
    side_multiple: int = 1
    """Image sides must be multiples of this."""
    attacks_targets: ClassVar[bool] = False
    """Whether protecting attacks target classifiers handed over with `use_targets` (the
    baselines); a trained network such as `RAEG` learnt its targets in training."""

    @abc.abstractmethod
    def protect(self, images: Tensor) -> Tensor:
        """Protected images, same shape, in ``[0, 1]``."""

    @abc.abstractmethod
    def recover(self, images: Tensor) -> Tensor:
        """The best estimate of the originals from protected (possibly altered) images."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Where the protector computes."""

    @abc.abstractmethod
    def key_material(self) -> bytes:
        """The secret the record keys are derived from (never stored in a file)."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The protector's kind, settings and metadata, for reports (JSON-serialisable)."""

    @abc.abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the protector to the checkpoint directory ``path`` (safetensors + JSON)."""

    @classmethod
    @abc.abstractmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, device: torch.device | str | None = None
    ) -> Self:
        """The protector held by a checkpoint already read, its format already checked.

        Args:
            checkpoint: The checkpoint as read (`Checkpoint.read`).
            device: Where to compute (default: the CPU).

        Raises:
            CheckpointError: If the settings or the weights are malformed.
        """

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> Self:
        """Load a protector saved by `save`, ready to use (``eval()`` mode for networks).

        Raises:
            CheckpointError: If ``path`` is not a checkpoint of this class (or is a
                pickle), or its settings or weights are malformed.
        """
        checkpoint = Checkpoint.read(path)
        if checkpoint.format != cls.checkpoint_format:
            raise CheckpointError(
                f"{path} is not a {cls.__name__} protector "
                f"(format {checkpoint.format!r}, expected {cls.checkpoint_format!r})"
            )
        return cls.from_checkpoint(checkpoint, device)

    @property
    def keys(self) -> RecordKeys:
        """The record keys (public key id and secret), computed from `key_material` on each use."""
        # invprotect.record imports invprotect.models.exact: a module-level import would cycle
        from invprotect.record import RecordKeys

        return RecordKeys.derive(self.key_material())

    @property
    def key_id(self) -> str:
        """The public key id stored in each file's record (reveals nothing of the secret)."""
        return self.keys.key_id

    @property
    def recovery_error_bound(self) -> float:
        """Largest root-mean-square error, in 8-bit levels, of `decode` on untouched files.

        ``0``: recovery is bit for bit; ``math.inf``: nothing is promised (the default,
        whose `decode` is the float recovery rounded to 8 bits).
        """
        return math.inf

    @property
    def can_protect(self) -> bool:
        """Whether `protect` has all it needs (a baseline needs its target classifiers)."""
        return True

    def use_targets(self, model: Callable[[Tensor], Tensor] | None) -> None:
        """Attack ``model`` when protecting; only for protectors that `attacks_targets`.

        Raises:
            TypeError: For a protector that does not attack target classifiers.
        """
        raise TypeError(f"{type(self).__name__} does not attack target classifiers when protecting")

    @property
    def poisons(self) -> bool:
        """Whether `encode` refines images with a targeted poison (see `use_poison`)."""
        return False

    def use_poison(self, poison: TargetedPoison | None) -> None:
        """Refine every protected image with ``poison``; only for protectors with exact records.

        Raises:
            TypeError: For a protector whose records cannot code a refined image.
        """
        raise TypeError(
            f"{type(self).__name__} cannot add a targeted poison: its records do not code "
            "refined images (only a RAEG key does)"
        )

    def encode(
        self, originals: Tensor, labels: Sequence[str | None] | None = None
    ) -> tuple[Tensor, list[bytes]]:
        """Protected 8-bit images and, per image, the bytes recovery needs beside the pixels.

        The default: `protect` on the 8-bit grid, no record bytes. No gradient mode is
        imposed (a baseline's attack needs gradients). ``labels`` (each image's class
        name, or ``None``) serve a poison (`use_poison`); other protectors ignore them.
        """
        protected = _to_8bit(self.protect(originals.to(self.device).float() / 255)).cpu()
        return protected, [b""] * originals.shape[0]

    def decode(self, protected: Tensor, records: list[bytes]) -> tuple[Tensor, list[bool]]:
        """The originals from untouched protected 8-bit images and their record bytes.

        The default: `approximate`, no recovery promised exact.

        Returns:
            ``(restored, exact)``: per image, whether the method promises this recovery
            to be the original bit for bit.

        Raises:
            ValueError: If a record does not fit its image (a corrupt record).
        """
        return self.approximate(protected), [False] * protected.shape[0]

    @torch.no_grad()
    def approximate(self, protected: Tensor) -> Tensor:
        """The best 8-bit estimate of the originals from altered protected images (no record)."""
        return _to_8bit(self.recover(protected.to(self.device).float() / 255)).cpu()


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint directory as read once: its weights and its ``config.json``.

    Attributes:
        path: The directory.
        tensors: The weights, on the CPU.
        settings: The JSON settings; ``settings["format"]`` names the protector class.
    """

    path: Path
    tensors: dict[str, Tensor]
    settings: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> Checkpoint:
        """Read the checkpoint directory ``path`` (see `invprotect.checkpoint.load_checkpoint`).

        Raises:
            CheckpointError: If ``path`` is a pickle, is not a checkpoint directory, or its
                files are missing or corrupt.
        """
        tensors, settings = load_checkpoint(path)
        return cls(Path(path), tensors, settings)

    @property
    def format(self) -> Any:
        """The ``format`` field of the settings (``None`` without one; any JSON value)."""
        return self.settings.get("format")


def _to_8bit(images: Tensor) -> Tensor:
    """Float images in ``[0, 1]`` to ``uint8`` (rounded, clipped)."""
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


_ProtectorClass = TypeVar("_ProtectorClass", bound=type[Protector])

PROTECTORS: Registry[type[Protector]] = Registry("protector checkpoint format")
"""Protector classes by the ``format`` field of their checkpoints."""


def register_protector(checkpoint_format: str) -> Callable[[_ProtectorClass], _ProtectorClass]:
    """Class decorator: register a `Protector` under its checkpoint format and set it.

    Raises:
        ValueError: If the format is already registered or is not a valid name.
    """
    register = PROTECTORS.register(checkpoint_format)

    def decorator(cls: _ProtectorClass) -> _ProtectorClass:
        cls.checkpoint_format = checkpoint_format
        return register(cls)

    return decorator


def list_protector_formats(pattern: str = "*") -> list[str]:
    """Checkpoint formats of the registered protectors matching the shell-style ``pattern``."""
    return PROTECTORS.names(pattern)
