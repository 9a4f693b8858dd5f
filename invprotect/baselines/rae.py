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

import inspect
import math
import struct
from dataclasses import dataclass

import numpy as np

from invprotect.baselines.adversarial import igsm
from invprotect.baselines.embedding import (
    ATTACKS,
    EmbeddingProtector,
    deflate,
    inflate,
)
from invprotect.models.protector import register_protector
from invprotect.rdh import CapacityError, capacity, embed

__all__ = ["RAE", "RAE_ATTACKS"]

_VERSION = 1
_HEADER = struct.Struct("<BBBB")
_QUANT_STEPS = (1, 2, 4)
_MAX_FACTOR = 128  # stored in one byte

RAE_ATTACKS = ATTACKS
"""The attacks RAE can use, by name: ``igsm`` and ``cw`` (Carlini-Wagner L2)."""


@dataclass(frozen=True)
class _Encoding:
    """One stored form of the perturbation and the squared error of its recovery."""

    payload: bytes
    squared_error: int


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
    return header + deflate(values.tobytes())


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
    values = np.frombuffer(inflate(payload[_HEADER.size :]), "<i2" if kind == 2 else np.int8)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"the stored perturbation has {values.size} values, expected {shape}")
    small = values.astype(np.int64).reshape(shape)
    restored = cover.astype(np.int64) + step * _expand(small, factor, cover.shape)
    exact = factor == 1 and step == 1
    if exact and (restored.min() < 0 or restored.max() > 255):
        raise ValueError("the stored perturbation leaves the 8-bit range")
    return np.clip(restored, 0, 255).astype(np.uint8), exact


@register_protector("invprotect.rae/1")
class RAE(EmbeddingProtector):
    """Reversible adversarial examples: the adversarial image carries its own perturbation.

    ``protect`` attacks the model, then hides ``D = I - A`` in ``A`` with reversible data
    hiding (reduced as described in `invprotect.baselines.rae` when it does not fit);
    ``recover`` needs no model and no key: anyone who knows RAE can undo it. The
    arguments (``model``, ``attack``, ``attack_params``) are those of
    `EmbeddingProtector`.

    Example:
        >>> import torch
        >>> from invprotect.baselines import RecoveryStatus
        >>> from invprotect.targets import Classifier
        >>> model = Classifier("mobilenet_small", [str(k) for k in range(10)]).eval()
        >>> rae = RAE(model, "igsm", {"epsilon": 2 / 255, "steps": 2})
        >>> ramp = torch.arange(32).mul(4).add(60).expand(1, 3, 32, 32).to(torch.uint8)
        >>> restored, statuses = rae.recover_uint8(rae.protect_uint8(ramp))
        >>> bool(torch.equal(restored, ramp)) == (statuses[0] is RecoveryStatus.EXACT)
        True
    """

    @property
    def recovery_error_bound(self) -> float:
        """The IGSM radius in 8-bit levels (``math.inf`` with C&W, which has none).

        A reduced perturbation is chosen only when its recovery's squared error is at most
        that of the adversarial image itself, which IGSM keeps within its radius.
        """
        if self.attack != "igsm":
            return math.inf
        epsilon = self.attack_params.get("epsilon", _IGSM_EPSILON)
        return float(epsilon) * 255.0

    def hide(self, original: np.ndarray, adversarial: np.ndarray, index: int) -> np.ndarray:
        """Embed the best stored form of ``original - adversarial`` that fits in ``adversarial``.

        Raises:
            CapacityError: If the image cannot carry even the RAE header.
        """
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

    def reveal(self, payload: bytes, cover: np.ndarray) -> tuple[np.ndarray, bool]:
        """The recovered image and whether it is exact (see `invprotect.baselines.rae`)."""
        return _decode(payload, cover)


_IGSM_EPSILON: float = inspect.signature(igsm).parameters["epsilon"].default
