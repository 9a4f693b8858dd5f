"""What the two baselines share: an attack, then side information hidden in the pixels.

`EmbeddingProtector` is the base of `invprotect.baselines.RAE` and
`invprotect.baselines.RIT`. Protecting attacks a target model (`ATTACKS`) to get an
adversarial image, lets the method hide what recovery needs in an image by reversible
data hiding (`invprotect.rdh`), one image at a time (`EmbeddingProtector.hide`), and
returns the marked image. Recovering extracts the payload and lets the method undo its
work (`EmbeddingProtector.reveal`); it needs neither the model nor a key.

In files, the protected pixels carry their own recovery data, so the record adds
nothing. The baselines have no secret: their key material is a digest of the method's
public checkpoint format (recovery reads everything it needs from the pixels, whatever
the attack settings), so their key id and record MAC only tell the methods apart and
detect corruption; they hide nothing.

The helpers `deflate`, `inflate` and `check_uint8` are shared by both methods.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import inspect
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
from torch import Tensor, nn

from invprotect import checks
from invprotect.baselines.adversarial import Model, carlini_wagner_l2, check_images, igsm
from invprotect.checkpoint import CheckpointError, save_checkpoint
from invprotect.models.protector import Checkpoint, Protector
from invprotect.rdh import extract

__all__ = [
    "ATTACKS",
    "AttackName",
    "EmbeddingProtector",
    "RecoveryStatus",
    "check_uint8",
    "deflate",
    "inflate",
]

AttackName = Literal["igsm", "cw"]
"""The names of `ATTACKS`."""
ATTACKS: dict[str, Callable[..., Tensor]] = {"igsm": igsm, "cw": carlini_wagner_l2}
"""The attacks a baseline can use, by name: ``igsm`` and ``cw`` (Carlini-Wagner L2)."""


class RecoveryStatus(enum.Enum):
    """What the recovery of one image achieved.

    Attributes:
        EXACT: The original, bit for bit.
        APPROXIMATE: An estimate: the stored side information was reduced to fit.
        FAILED: No valid embedding was found (the image was altered after protection, or
            never protected); the image is returned unchanged.
    """

    EXACT = "exact"
    APPROXIMATE = "approximate"
    FAILED = "failed"


class EmbeddingProtector(Protector):
    """A baseline protector: attack, then hide the side information in the result.

    Args:
        model: The classifier or ensemble to fool (taking ``[0, 1]`` images, returning
            logits), on the device of the images to protect. Only `protect` uses it; pass
            ``None`` for a recover-only protector.
        attack: ``"igsm"`` or ``"cw"`` (see `ATTACKS`).
        attack_params: Keyword arguments of the attack (``epsilon``, ``steps``, ``c``,
            ...); unset ones keep the attack's defaults.

    Raises:
        ValueError: For an unknown attack or parameter.
    """

    attacks_targets = True

    def __init__(
        self,
        model: Model | None,
        attack: AttackName = "igsm",
        attack_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.attack = attack
        self.attack_params = _check_attack(attack, attack_params)

    @abc.abstractmethod
    def hide(self, original: np.ndarray, adversarial: np.ndarray, index: int) -> np.ndarray:
        """The protected image of one ``uint8`` ``(H, W, 3)`` original and its adversarial.

        Args:
            original: The original image.
            adversarial: Its adversarial image (`adversarial`), on the 8-bit grid.
            index: The image's place in its batch, for error messages.

        Raises:
            CapacityError: If the image cannot carry what recovery needs.
        """

    @abc.abstractmethod
    def reveal(self, payload: bytes, cover: np.ndarray) -> tuple[np.ndarray, bool]:
        """The recovered image and whether it is exact, from an extracted payload and cover.

        Raises:
            ValueError: For a payload the method cannot read (or that does not fit).
        """

    def config(self) -> dict[str, Any]:
        """The JSON sidecar: format, attack name and parameters."""
        return {
            "format": self.checkpoint_format,
            "attack": self.attack,
            "attack_params": self.attack_params,
        }

    @property
    def device(self) -> torch.device:
        """The device of the target model (the CPU without one)."""
        if isinstance(self.model, nn.Module):
            for parameter in self.model.parameters():
                return parameter.device
        return torch.device("cpu")

    def key_material(self) -> bytes:
        """SHA-256 of the method's format name: public, and its recovery needs no settings."""
        return hashlib.sha256(self.checkpoint_format.encode()).digest()

    def describe(self) -> dict[str, Any]:
        """``kind`` (the class name in lower case) and `config`."""
        return {"kind": type(self).__name__.lower(), "config": self.config()}

    @property
    def can_protect(self) -> bool:
        """Whether a target model was given."""
        return self.model is not None

    def use_targets(self, model: Model | None) -> None:
        """Attack ``model`` when protecting (``None``: recover only)."""
        self.model = model

    def labels(self, images: Tensor) -> Tensor:
        """The labels the attack moves away from: the model's predictions on ``images``."""
        model = self._require_model()
        with torch.no_grad():
            return model(images).argmax(1)

    def adversarial(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The adversarial images (before embedding), on the 8-bit grid.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]`` on the 8-bit grid.
            labels: ``(B,)`` classes to move away from; default: the model's predictions.
        """
        check_images(images, on_grid=True)
        labels = self.labels(images) if labels is None else labels
        return ATTACKS[self.attack](self._require_model(), images, labels, **self.attack_params)

    def protect(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Protected images: the method's work on the adversarial images, hidden data inside.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]`` on the 8-bit grid (8-bit originals).
            labels: ``(B,)`` classes to move away from; default: the model's predictions.

        Returns:
            ``(B, 3, H, W)`` float on the 8-bit grid, on the images' device.

        Raises:
            ValueError: For images of the wrong shape or range, or off the 8-bit grid.
            CapacityError: If an image cannot carry what recovery needs.
            RuntimeError: If the protector has no model.
        """
        adversarial = self.adversarial(images, labels)
        originals, covers = _to_uint8_hwc(images), _to_uint8_hwc(adversarial)
        pairs = enumerate(zip(originals, covers, strict=True))
        marked = np.stack([self.hide(o, a, index) for index, (o, a) in pairs])
        return _from_uint8_hwc(marked, images)

    def recover(self, images: Tensor) -> Tensor:
        """The originals (exact when `RecoveryStatus.EXACT`) from protected images.

        Images are rounded to the 8-bit grid first; one without a valid embedding (altered,
        or never protected) is returned exactly as given. See `recover_uint8` for the status.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]``.

        Raises:
            ValueError: For images of the wrong shape or range.
        """
        check_images(images)
        restored, statuses = self._recover_all(_to_uint8_hwc(images))
        out = _from_uint8_hwc(restored, images)
        failed = [index for index, status in enumerate(statuses) if status is RecoveryStatus.FAILED]
        if failed:
            out[failed] = images[failed].detach()
        return out

    def protect_uint8(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """`protect` for ``uint8`` images ``(B, 3, H, W)``; returns ``uint8``."""
        check_uint8(images)
        return self.protect(images.float().div(255.0), labels).mul(255.0).round().byte()

    def recover_uint8(self, images: Tensor) -> tuple[Tensor, list[RecoveryStatus]]:
        """Recover ``uint8`` images ``(B, 3, H, W)``; also return what each recovery achieved.

        Returns:
            ``(restored, statuses)``: ``uint8`` images (an image whose status is
            `RecoveryStatus.FAILED` is returned unchanged) and one status per image.
        """
        check_uint8(images)
        restored, statuses = self._recover_all(_uint8_hwc(images))
        out = torch.from_numpy(restored).permute(0, 3, 1, 2).to(images.device)
        return out.contiguous(), statuses

    def decode(self, protected: Tensor, records: list[bytes]) -> tuple[Tensor, list[bool]]:
        """`recover_uint8`; exact where the status is `RecoveryStatus.EXACT` (records are empty)."""
        restored, statuses = self.recover_uint8(protected)
        return restored, [status is RecoveryStatus.EXACT for status in statuses]

    def approximate(self, protected: Tensor) -> Tensor:
        """Whatever the embedded data of altered 8-bit images still give (`recover_uint8`)."""
        return self.recover_uint8(protected)[0]

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` (and an empty ``weights.safetensors``) to the directory ``path``.

        The model is not saved: the method has no secret, and recovery does not need it.
        """
        return save_checkpoint(path, {}, self.config())

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint, device: torch.device | str | None = None
    ) -> Self:
        """A recover-only protector from its settings; `use_targets` lets it protect.

        The weights (none) and ``device`` are not used: the method computes where its
        target model is.

        Raises:
            CheckpointError: If the settings are invalid (a key missing or of a wrong type).
        """
        try:
            return cls(None, **cls.arguments_of(checkpoint.settings))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{checkpoint.path}: invalid {cls.__name__} settings: {error!r}"
            ) from None

    @classmethod
    def arguments_of(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """The constructor's arguments but ``model`` from a checkpoint's settings (`config`).

        Raises:
            KeyError: If a required setting is missing.
        """
        return {"attack": settings["attack"], "attack_params": settings.get("attack_params")}

    def _recover_all(self, marked: np.ndarray) -> tuple[np.ndarray, list[RecoveryStatus]]:
        """Extract and `reveal` every image of ``marked`` (``(B, H, W, C)`` uint8)."""
        restored, statuses = [], []
        for image in marked:
            try:
                payload, cover = extract(image)
                original, exact = self.reveal(payload, cover)
            except ValueError:
                restored.append(image)
                statuses.append(RecoveryStatus.FAILED)
                continue
            restored.append(original)
            statuses.append(RecoveryStatus.EXACT if exact else RecoveryStatus.APPROXIMATE)
        return np.stack(restored), statuses

    def _require_model(self) -> Model:
        if self.model is None:
            raise RuntimeError(
                "this protector has no model, so it can only recover; "
                "pass the target classifier (or ensemble) to protect"
            )
        return self.model


def deflate(data: bytes) -> bytes:
    """Raw DEFLATE (zlib level 9, no zlib header or checksum: the RDH layer has a CRC)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def inflate(data: bytes) -> bytes:
    """Inverse of `deflate`.

    Raises:
        ValueError: If ``data`` is not a complete raw DEFLATE stream.
    """
    decompressor = zlib.decompressobj(-15)
    try:
        out = decompressor.decompress(data) + decompressor.flush()
    except zlib.error as error:
        raise ValueError(f"corrupt DEFLATE stream: {error}") from None
    if not decompressor.eof:
        raise ValueError("truncated DEFLATE stream")
    return out


def check_uint8(images: Tensor, name: str = "images") -> None:
    """Check a ``uint8`` RGB batch ``(B, 3, H, W)``.

    Raises:
        ValueError: For another dtype or shape.
    """
    checks.check_uint8_images(name, images)


def _check_attack(attack: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate an attack name and its keyword arguments; return them as a JSON-ready dict."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {sorted(ATTACKS)}")
    allowed = list(inspect.signature(ATTACKS[attack]).parameters)[3:]
    values = dict(params or {})
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {attack} parameters {unknown}; allowed: {allowed}")
    return values


def _uint8_hwc(images: Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` uint8 tensor to a C-contiguous ``(B, H, W, 3)`` array on the CPU."""
    # C-contiguous: `invprotect.rdh` writes through ``reshape(-1)``, a copy for other layouts.
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())


def _to_uint8_hwc(images: Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` float in ``[0, 1]`` to ``(B, H, W, 3)`` uint8 (rounded, on the CPU)."""
    return _uint8_hwc(images.detach().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8))


def _from_uint8_hwc(images: np.ndarray, like: Tensor) -> Tensor:
    """``(B, H, W, 3)`` uint8 to ``(B, 3, H, W)`` float in ``[0, 1]`` on ``like``'s device."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return tensor.to(device=like.device, dtype=like.dtype).div(255.0)
