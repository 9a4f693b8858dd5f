"""RAE: the reversible adversarial example of Liu et al. (2018), a baseline of the paper.

J. Liu, D. Hou, W. Zhang and N. Yu, "Reversible adversarial examples", arXiv 1811.00189,
2018. An adversarial image ``A`` of the original ``I`` is made by a white-box attack
(IGSM or C&W, `invprotect.baselines.adversarial`); the perturbation ``D = I - A`` (one
signed integer per pixel and channel) is compressed and hidden in ``A`` by reversible data
hiding (`invprotect.rdh`). The marked image is the protected image. Recovery extracts the
payload and ``A`` bit for bit and returns ``A + D = I``.

When the compressed ``D`` exceeds the capacity of ``A``, RAE hides a downsampled
perturbation instead (as Chen et al., ICME 2022, describe it; the exact reduction is not
specified, so this is one reading): ``D`` is averaged over ``f x f`` blocks and
quantised with step ``q``, ``D_small = round(mean_f(D) / q)``, for ``f`` every power of
two up to the image side (at most 128) and ``q`` in 1, 2, 4; of the forms that fit, the
one whose recovery is closest to the original (squared error) is embedded. Recovery then
adds ``q * D_small`` repeated over each block and clips to the 8-bit range: an
approximation, flagged as such in the payload and by `RecoveryStatus`. When nothing
fits, only the header is stored (the recovery is ``A``); an image that cannot carry
even that (capacity below 32 bits: noise-like images) is refused with `CapacityError`.

Payload (bytes): version ``1``; ``f`` (``0``: nothing stored, the recovery is ``A``);
``q``; value type (``1``: int8, ``2``: int16 little-endian); then the raw DEFLATE stream
(zlib level 9, no zlib header) of ``D_small`` in ``(H', W', C)`` C order.

The key of RAE is the scheme itself. The perturbation travels inside the protected
image, so anyone who knows RAE (this code) recovers the original from the protected
image; nothing secret is saved, and the target model is not needed to recover. That is
the paper's design, and the main weakness RAEG removes (with RAEG, the saved generator
is the key).
"""

from __future__ import annotations

import enum
import inspect
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from invprotect.baselines.adversarial import Model, carlini_wagner_l2, check_images, igsm
from invprotect.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from invprotect.models.protector import Protector
from invprotect.rdh import CapacityError, capacity, embed, extract

__all__ = ["RAE", "RAE_ATTACKS", "RecoveryStatus"]

_FORMAT = "invprotect.rae/1"
_VERSION = 1
_HEADER = struct.Struct("<BBBB")
_QUANT_STEPS = (1, 2, 4)
_MAX_FACTOR = 128  # stored in one byte

AttackName = Literal["igsm", "cw"]
RAE_ATTACKS: dict[str, Callable[..., Tensor]] = {"igsm": igsm, "cw": carlini_wagner_l2}
"""The attacks RAE can use, by name: ``igsm`` and ``cw`` (Carlini-Wagner L2)."""


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


@dataclass(frozen=True)
class _Encoding:
    """One stored form of the perturbation and the squared error of its recovery."""

    payload: bytes
    squared_error: int


def _deflate(data: bytes) -> bytes:
    """Raw DEFLATE (zlib level 9, no zlib header or checksum: the RDH layer has a CRC)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _inflate(data: bytes) -> bytes:
    """Inverse of `_deflate`.

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


def _check_uint8(images: Tensor, name: str = "images") -> None:
    """Check a ``uint8`` RGB batch ``(B, 3, H, W)``.

    Raises:
        ValueError: For another dtype or shape.
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        kind = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a torch.uint8 tensor, got {kind}")
    if images.ndim != 4 or images.shape[1] != 3 or images.numel() == 0:
        raise ValueError(
            f"{name} must have shape (B, 3, H, W) with B >= 1 (RGB), got {tuple(images.shape)}"
        )


def _block_means(d: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``d`` (``(H, W, C)``) over ``factor x factor`` blocks (edge ones may be partial)."""
    rows, cols = np.arange(d.shape[0]) // factor, np.arange(d.shape[1]) // factor
    total = np.zeros((rows[-1] + 1, cols[-1] + 1, d.shape[2]), np.float64)
    np.add.at(total, (rows[:, None], cols[None, :]), d)
    return total / (np.bincount(rows)[:, None, None] * np.bincount(cols)[None, :, None])


def _expand(small: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat each value of ``small`` over its ``factor x factor`` block, cropped to ``shape``."""
    big = np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)
    return big[: shape[0], : shape[1]]


def _encode(small: np.ndarray, factor: int, step: int) -> bytes:
    wide = small.min() < -128 or small.max() > 127
    values = small.astype("<i2" if wide else np.int8)
    header = _HEADER.pack(_VERSION, factor, step, 2 if wide else 1)
    return header + _deflate(values.tobytes())


def _candidates(original: np.ndarray, adversarial: np.ndarray) -> list[_Encoding]:
    """Every stored form of ``D`` tried: exact first, then reduced ones, then nothing."""
    d = original.astype(np.int64) - adversarial.astype(np.int64)
    found = [_Encoding(_encode(d, 1, 1), 0)]
    factor, factors = 1, [1]
    while factor < max(d.shape[:2]) and factor < _MAX_FACTOR:
        factor *= 2
        factors.append(factor)
    for factor in factors:
        mean = _block_means(d, factor)
        for step in _QUANT_STEPS:
            if factor == step == 1:
                continue
            small = np.rint(mean / step).astype(np.int64)
            restored = np.clip(adversarial + step * _expand(small, factor, d.shape), 0, 255)
            error = int(np.square(restored - original.astype(np.int64)).sum())
            found.append(_Encoding(_encode(small, factor, step), error))
    found.append(_Encoding(_HEADER.pack(_VERSION, 0, 1, 1), int(np.square(d).sum())))
    return found


def _decode(payload: bytes, cover: np.ndarray) -> tuple[np.ndarray, bool]:
    """The recovered image and whether it is exact, from an extracted payload and cover."""
    if len(payload) < _HEADER.size:
        raise ValueError("the payload is shorter than the RAE header")
    version, factor, step, kind = _HEADER.unpack_from(payload)
    if version != _VERSION or kind not in (1, 2) or step < 1:
        raise ValueError(f"not an RAE payload (version {version}, type {kind}, step {step})")
    if factor == 0:
        return cover.copy(), False
    height, width, channels = cover.shape
    shape = (-(-height // factor), -(-width // factor), channels)
    values = np.frombuffer(_inflate(payload[_HEADER.size :]), "<i2" if kind == 2 else np.int8)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"the stored perturbation has {values.size} values, expected {shape}")
    small = values.astype(np.int64).reshape(shape)
    restored = cover.astype(np.int64) + step * _expand(small, factor, cover.shape)
    exact = factor == 1 and step == 1
    if exact and (restored.min() < 0 or restored.max() > 255):
        raise ValueError("the stored perturbation leaves the 8-bit range")
    return np.clip(restored, 0, 255).astype(np.uint8), exact


class RAE(Protector):
    """Reversible adversarial examples: the adversarial image carries its own perturbation.

    ``protect`` attacks the model, then hides ``D = I - A`` in ``A`` with reversible data
    hiding (reduced as described in `invprotect.baselines.rae` when it does not fit);
    ``recover`` needs no model and no key: anyone who knows RAE can undo it.

    Args:
        model: The classifier or ensemble to fool (taking ``[0, 1]`` images, returning
            logits), on the device of the images to protect. Only `protect` uses it; pass
            ``None`` for a recover-only protector.
        attack: ``"igsm"`` or ``"cw"`` (see `RAE_ATTACKS`).
        attack_params: Keyword arguments of the attack (``epsilon``, ``steps``, ``c``,
            ...); unset ones keep the attack's defaults.

    Raises:
        ValueError: For an unknown attack or parameter.

    Example:
        >>> from invprotect.targets import Classifier
        >>> model = Classifier("mobilenet_small", [str(k) for k in range(10)]).eval()
        >>> rae = RAE(model, "igsm", {"epsilon": 2 / 255, "steps": 2})
        >>> ramp = torch.arange(32).mul(4).add(60).expand(1, 3, 32, 32).to(torch.uint8)
        >>> restored, statuses = rae.recover_uint8(rae.protect_uint8(ramp))
        >>> bool(torch.equal(restored, ramp)) == (statuses[0] is RecoveryStatus.EXACT)
        True
    """

    def __init__(
        self,
        model: Model | None,
        attack: AttackName = "igsm",
        attack_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.attack = attack
        self.attack_params = _check_attack(attack, attack_params)

    def labels(self, images: Tensor) -> Tensor:
        """The labels the attack moves away from: the model's predictions on ``images``."""
        model = self._require_model()
        with torch.no_grad():
            return model(images).argmax(1)

    def adversarial(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The adversarial images ``A`` (before embedding), on the 8-bit grid.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]`` on the 8-bit grid.
            labels: ``(B,)`` classes to move away from; default: the model's predictions.
        """
        check_images(images, on_grid=True)
        labels = self.labels(images) if labels is None else labels
        return RAE_ATTACKS[self.attack](self._require_model(), images, labels, **self.attack_params)

    def protect(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Protected images: the adversarial images with their perturbation embedded.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]`` on the 8-bit grid (8-bit originals).
            labels: ``(B,)`` classes to move away from; default: the model's predictions.

        Returns:
            ``(B, 3, H, W)`` float on the 8-bit grid, on the images' device.

        Raises:
            ValueError: For images of the wrong shape or range, or off the 8-bit grid.
            CapacityError: If an image cannot carry even the payload header.
            RuntimeError: If the protector has no model.
        """
        adversarial = self.adversarial(images, labels)
        originals, covers = _to_uint8_hwc(images), _to_uint8_hwc(adversarial)
        pairs = enumerate(zip(originals, covers, strict=True))
        marked = np.stack([_embed_best(o, a, index) for index, (o, a) in pairs])
        return _from_uint8_hwc(marked, images)

    def recover(self, images: Tensor) -> Tensor:
        """The originals (exact when `RecoveryStatus.EXACT`) from protected images.

        Images are rounded to the 8-bit grid first; one without a valid embedding (altered,
        or never protected) is returned as it is. See `recover_uint8` for the status.

        Args:
            images: ``(B, 3, H, W)`` float in ``[0, 1]``.

        Raises:
            ValueError: For images of the wrong shape or range.
        """
        check_images(images)
        return _recover_float(images, _decode)

    def protect_uint8(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """`protect` for ``uint8`` images ``(B, 3, H, W)``; returns ``uint8``."""
        _check_uint8(images)
        return self.protect(images.float().div(255.0), labels).mul(255.0).round().byte()

    def recover_uint8(self, images: Tensor) -> tuple[Tensor, list[RecoveryStatus]]:
        """Recover ``uint8`` images ``(B, 3, H, W)``; also return what each recovery achieved.

        Returns:
            ``(restored, statuses)``: ``uint8`` images (an image whose status is
            `RecoveryStatus.FAILED` is returned unchanged) and one status per image.
        """
        _check_uint8(images)
        restored, statuses = _recover_all(_uint8_hwc(images), _decode)
        out = torch.from_numpy(restored).permute(0, 3, 1, 2).to(images.device)
        return out.contiguous(), statuses

    def config(self) -> dict[str, Any]:
        """The JSON sidecar: format, attack name and parameters."""
        return {"format": _FORMAT, "attack": self.attack, "attack_params": self.attack_params}

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` (and an empty ``weights.safetensors``) to the directory ``path``.

        The model is not saved: RAE has no secret, and recovery does not need it.
        """
        return save_checkpoint(path, {}, self.config())

    @classmethod
    def load(cls, path: str | Path, model: Model | None = None) -> RAE:
        """Load a protector saved by `save`; pass ``model`` to protect with it.

        Raises:
            CheckpointError: If ``path`` is not an RAE checkpoint.
        """
        settings = _settings_of(path, _FORMAT, "RAE")
        try:
            return cls(model, settings["attack"], settings.get("attack_params"))
        except (KeyError, ValueError) as error:
            raise CheckpointError(f"{path}: invalid RAE settings: {error}") from None

    def _require_model(self) -> Model:
        if self.model is None:
            raise RuntimeError(
                "this protector has no model, so it can only recover; "
                "pass the target classifier (or ensemble) to protect"
            )
        return self.model


def _settings_of(path: str | Path, expected_format: str, method: str) -> dict[str, Any]:
    """The JSON settings of a baseline checkpoint, refused unless of ``expected_format``."""
    _, settings = load_checkpoint(path)
    if settings.get("format") != expected_format:
        raise CheckpointError(
            f"{path} is not an {method} protector (format {settings.get('format')!r})"
        )
    return settings


def _check_attack(attack: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate an attack name and its keyword arguments; return them as a JSON-ready dict."""
    if attack not in RAE_ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {sorted(RAE_ATTACKS)}")
    allowed = list(inspect.signature(RAE_ATTACKS[attack]).parameters)[3:]
    values = dict(params or {})
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {attack} parameters {unknown}; allowed: {allowed}")
    return values


def _embed_best(original: np.ndarray, adversarial: np.ndarray, index: int) -> np.ndarray:
    """Embed the best stored form of ``original - adversarial`` that fits in ``adversarial``."""
    room = capacity(adversarial)
    candidates = _candidates(original, adversarial)
    if 8 * len(candidates[0].payload) <= room:
        return embed(adversarial, candidates[0].payload)
    fitting = [c for c in candidates if 8 * len(c.payload) <= room]
    if not fitting:
        raise CapacityError(
            f"image {index} cannot carry even the {8 * _HEADER.size}-bit RAE header "
            f"(capacity {room} bits: too noisy or too small for reversible data hiding)"
        )
    return embed(adversarial, min(fitting, key=lambda c: c.squared_error).payload)


def _recover_all(
    marked: np.ndarray, decode: Callable[[bytes, np.ndarray], tuple[np.ndarray, bool]]
) -> tuple[np.ndarray, list[RecoveryStatus]]:
    """Extract and decode every image of ``marked`` (``(B, H, W, C)`` uint8).

    ``decode(payload, cover)`` returns the restored image and whether it is exact, and
    raises `ValueError` for a payload it cannot read.
    """
    restored, statuses = [], []
    for image in marked:
        try:
            payload, cover = extract(image)
            original, exact = decode(payload, cover)
        except ValueError:
            restored.append(image)
            statuses.append(RecoveryStatus.FAILED)
            continue
        restored.append(original)
        statuses.append(RecoveryStatus.EXACT if exact else RecoveryStatus.APPROXIMATE)
    return np.stack(restored), statuses


def _recover_float(
    images: Tensor, decode: Callable[[bytes, np.ndarray], tuple[np.ndarray, bool]]
) -> Tensor:
    """`_recover_all` for float images; a failed image is returned exactly as given."""
    restored, statuses = _recover_all(_to_uint8_hwc(images), decode)
    out = _from_uint8_hwc(restored, images)
    failed = [index for index, status in enumerate(statuses) if status is RecoveryStatus.FAILED]
    if failed:
        out[failed] = images[failed].detach()
    return out
