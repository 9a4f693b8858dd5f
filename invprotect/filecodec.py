"""The 8-bit file side of a protector: what the folder pipeline writes and reads back.

A protected file is an 8-bit PNG plus a recovery record. A `FileCodec` turns 8-bit
originals into 8-bit protected images and per-image record bytes, and back:

* `NetworkCodec` (`RAEG`): the network protects; the record carries `ExactCodec`'s
  compact residual, which repairs what 8-bit rounding destroyed, so recovery is exact.
* `EmbeddedCodec` (the baselines `RAE` and `RIT`): the protected pixels themselves carry
  what recovery needs (reversible data hiding); the record adds nothing. RAE's recovery is
  approximate when its perturbation did not fit, and the codec says so.

Each codec has `RecordKeys` derived from secret material: for `NetworkCodec` the SHA-256 of
the generator's weights (whoever holds the weights holds the key). The baselines have no
secret: their material is a digest of the method's public format name (their recovery reads
everything it needs from the pixels, whatever the attack settings), so their key id and
record MAC only tell the methods apart and detect corruption; they hide nothing.

`file_codec` picks the codec of a protector.
"""

from __future__ import annotations

import abc
import functools
import hashlib
from typing import Any

import torch
from torch import Tensor, nn

from invprotect.baselines import RAE, RIT, RecoveryStatus
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from invprotect.models.protector import Protector
from invprotect.record import RecordKeys

__all__ = ["EmbeddedCodec", "FileCodec", "NetworkCodec", "file_codec"]


class FileCodec(abc.ABC):
    """8-bit originals to 8-bit protected images plus record bytes, and back.

    All images are ``uint8`` ``(B, 3, H, W)`` on the CPU; ``H`` and ``W`` are multiples of
    `side_multiple` (the folder pipeline pads and crops).
    """

    side_multiple: int = 1
    """Image sides must be multiples of this."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Where the protector computes."""

    @abc.abstractmethod
    def _key_material(self) -> bytes:
        """The secret the record keys are derived from."""

    @functools.cached_property
    def keys(self) -> RecordKeys:
        """The protector's record keys (public key id and secret)."""
        return RecordKeys.derive(self._key_material())

    @property
    def key(self) -> str:
        """The public key id stored in each file's record (reveals nothing of the secret)."""
        return self.keys.key_id

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """The protector's kind, settings and metadata, for reports (JSON-serialisable)."""

    @abc.abstractmethod
    def encode(self, originals: Tensor) -> tuple[Tensor, list[bytes]]:
        """Protected images and, per image, the bytes recovery needs beside the pixels."""

    @abc.abstractmethod
    def decode(self, protected: Tensor, records: list[bytes]) -> tuple[Tensor, list[bool]]:
        """The originals from untouched protected images and their record bytes.

        Returns:
            ``(restored, exact)``: per image, whether the method promises this recovery
            to be the original bit for bit (RAE's reduced perturbation does not).

        Raises:
            ValueError: If a record does not fit its image (a corrupt record).
        """

    @abc.abstractmethod
    def approximate(self, protected: Tensor) -> Tensor:
        """The best estimate of the originals from altered protected images (no record)."""


class NetworkCodec(FileCodec):
    """`RAEG` in files: the network protects, a residual in the record makes recovery exact.

    Args:
        protector: A trained `RAEG`, on the device it should compute on.
    """

    def __init__(self, protector: RAEG) -> None:
        self.protector = protector
        self.side_multiple = protector.side_multiple
        self.exact = ExactCodec(protector)

    @property
    def device(self) -> torch.device:
        """See `FileCodec.device`."""
        return next(self.protector.parameters()).device

    def _key_material(self) -> bytes:
        """SHA-256 of the generator's weights."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.protector.generator.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.digest()

    def describe(self) -> dict[str, Any]:
        """See `FileCodec.describe`."""
        return {
            "kind": "raeg",
            "config": self.protector.config.to_dict(),
            "metadata": self.protector.metadata,
        }

    @torch.no_grad()
    def encode(self, originals: Tensor) -> tuple[Tensor, list[bytes]]:
        """See `FileCodec.encode`."""
        protected = self.protector.protect(originals.to(self.device).float() / 255)
        protected = (protected * 255).round().clamp(0, 255).to(torch.uint8).cpu()
        return protected, self.exact.residuals(originals, protected)

    def decode(self, protected: Tensor, records: list[bytes]) -> tuple[Tensor, list[bool]]:
        """See `FileCodec.decode`."""
        return self.exact.restore(protected, records), [True] * protected.shape[0]

    @torch.no_grad()
    def approximate(self, protected: Tensor) -> Tensor:
        """See `FileCodec.approximate`."""
        recovered = self.protector.recover(protected.to(self.device).float() / 255)
        return (recovered * 255).round().clamp(0, 255).to(torch.uint8).cpu()


class EmbeddedCodec(FileCodec):
    """`RAE` or `RIT` in files: the protected pixels carry their own recovery data.

    Args:
        protector: The baseline; it needs its target model to encode, not to decode.
    """

    def __init__(self, protector: RAE | RIT) -> None:
        self.protector = protector

    @property
    def device(self) -> torch.device:
        """The device of the baseline's target model (the CPU without one)."""
        model = self.protector.model
        if isinstance(model, nn.Module):
            for parameter in model.parameters():
                return parameter.device
        return torch.device("cpu")

    def _key_material(self) -> bytes:
        """SHA-256 of the method's format name: public, and its recovery needs no settings."""
        return hashlib.sha256(str(self.protector.config()["format"]).encode()).digest()

    def describe(self) -> dict[str, Any]:
        """See `FileCodec.describe`."""
        return {"kind": type(self.protector).__name__.lower(), "config": self.protector.config()}

    def encode(self, originals: Tensor) -> tuple[Tensor, list[bytes]]:
        """See `FileCodec.encode`."""
        protected = self.protector.protect_uint8(originals.to(self.device)).cpu()
        return protected, [b""] * originals.shape[0]

    def decode(self, protected: Tensor, records: list[bytes]) -> tuple[Tensor, list[bool]]:
        """See `FileCodec.decode`; the record bytes are empty."""
        restored, statuses = self.protector.recover_uint8(protected)
        return restored, [status is RecoveryStatus.EXACT for status in statuses]

    def approximate(self, protected: Tensor) -> Tensor:
        """See `FileCodec.approximate`: whatever the embedded data still give."""
        return self.protector.recover_uint8(protected)[0]


def file_codec(protector: Protector) -> FileCodec:
    """The `FileCodec` of ``protector`` (`RAEG`, `RAE` or `RIT`).

    Raises:
        TypeError: For another kind of protector.
    """
    if isinstance(protector, RAEG):
        return NetworkCodec(protector)
    if isinstance(protector, RAE | RIT):
        return EmbeddedCodec(protector)
    raise TypeError(f"no file codec for {type(protector).__name__}; expected RAEG, RAE or RIT")
