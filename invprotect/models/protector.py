"""The contract every protector shares (RAEG and the baselines): protect, recover, save, load."""

from __future__ import annotations

import abc
from pathlib import Path

from torch import Tensor


class Protector(abc.ABC):
    """A reversible image protector; the saved protector is the key that recovers the originals.

    Images are float RGB ``(B, 3, H, W)`` in ``[0, 1]``; outputs live on the inputs' device.
    """

    @abc.abstractmethod
    def protect(self, images: Tensor) -> Tensor:
        """Protected images, same shape, in ``[0, 1]``."""

    @abc.abstractmethod
    def recover(self, images: Tensor) -> Tensor:
        """The best estimate of the originals from protected (possibly altered) images."""

    @abc.abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the protector to the checkpoint directory ``path`` (safetensors + JSON)."""
