"""RIT: reversible image transformation towards an adversarial image (Yin et al., 2019).

Z. Yin, H. Wang, L. Chen, J. Wang and W. Zhang, "Reversible adversarial attack based on
reversible image transformation", arXiv 1911.02360, 2019, a baseline of the paper. The
transformation is the reversible image transformation (RIT) of W. Zhang, H. Wang, D. Hou
and N. Yu, "Reversible data hiding in encrypted images by reversible image
transformation", IEEE Transactions on Multimedia 18(8), 2016: the original image ``I`` is
disguised as a target image ``T``, here its IGSM adversarial image.

`rit_transform`, with blocks of ``b x b`` pixels (all channels together):

1. Cut ``I`` and ``T`` into the blocks of the ``(H // b) x (W // b)`` grid (a remainder
   strip at the right or bottom edge is left as it is).
2. Pair blocks by standard deviation: each image's blocks are ranked by standard
   deviation (ties by position) and split into ``classes`` classes of equal size; the
   ``j``-th original block of a class, in scan order, goes to the position of the
   ``j``-th target block of the same class. ``classes=None`` (one block per class) pairs
   the two lists sorted by standard deviation, in order.
3. Shift each channel of a placed block by the rounded difference of the block means,
   ``round(mean(T_block) - mean(I_block))``, limited so that no pixel leaves
   ``[0, 255]``.
4. Rotate the block by the multiple of 90 degrees that brings it closest (squared
   error) to the target block.

The side information, raw DEFLATE (zlib level 9) of the pairing (each position's source
block, as an offset from the position), the mean shifts (both zigzag-coded in byte
planes, channel by channel) and the rotations (one byte per block), is hidden in
the transformed image with reversible data hiding (`invprotect.rdh`); `rit_restore`
undoes the rotation, the shift and the pairing exactly. `RIT.protect` tries the block
sizes of ``block_sizes`` in turn and keeps the first whose side information fits; it
raises `CapacityError` when none does.

Departures from the papers: the standard deviation is compared exactly, through the
integer ``n * sum(x^2) - sum(x)^2`` of a block of ``n`` values; overflow is prevented by
limiting the mean shift instead of recording the pixels that leave the 8-bit range (no
side information, at the cost of a larger error to the target for blocks near 0 or
255); the side information is DEFLATE-compressed rather than Huffman-coded.

As with `invprotect.baselines.RAE`, the key is the scheme: whoever knows RIT recovers the
original from the protected image alone, without the model.

Pairing by standard deviation is designed for an unrelated target. Towards the
adversarial image of the same picture it shuffles blocks whose standard deviation the
perturbation reorders, so the transformed image is farther from ``T`` than ``I`` is
(blocky, as the paper notes); ``classes=1`` keeps every block in place (mean shift and
rotation only) and stays closer to ``T`` than ``I``, but carries little of the attack.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from invprotect.baselines.adversarial import Model
from invprotect.baselines.embedding import AttackName, EmbeddingProtector, deflate, inflate
from invprotect.models.protector import register_protector
from invprotect.rdh import CapacityError, capacity, embed

__all__ = ["RIT", "rit_restore", "rit_transform"]

_VERSION = 1
_HEADER = struct.Struct("<BB")


def _as_blocks(image: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, C)`` to ``(N, size, size, C)`` int64 blocks of the full grid, in scan order."""
    height, width, channels = image.shape
    rows, cols = height // size, width // size
    grid = image[: rows * size, : cols * size].astype(np.int64)
    return (
        grid.reshape(rows, size, cols, size, channels)
        .swapaxes(1, 2)
        .reshape(-1, size, size, channels)
    )


def _from_blocks(blocks: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Write ``blocks`` back into a copy of ``like`` (the inverse of `_as_blocks`)."""
    out = like.copy()
    height, width, channels = like.shape
    size = blocks.shape[1]
    rows, cols = height // size, width // size
    grid = blocks.reshape(rows, cols, size, size, channels).swapaxes(1, 2)
    out[: rows * size, : cols * size] = grid.reshape(rows * size, cols * size, channels)
    return out


def _spread(blocks: np.ndarray) -> np.ndarray:
    """``n * sum(x^2) - sum(x)^2`` per block: ``n^2`` times the variance, as an exact integer."""
    flat = blocks.reshape(len(blocks), -1)
    total = flat.sum(1)
    return flat.shape[1] * np.square(flat).sum(1) - total * total


def _classes(spread: np.ndarray, classes: int) -> np.ndarray:
    """Class of each block: its rank by ``spread`` (ties by position) times ``classes`` over N."""
    rank = np.empty(len(spread), np.int64)
    rank[np.argsort(spread, kind="stable")] = np.arange(len(spread))
    return rank * classes // len(spread)


def _offset_bytes(count: int) -> int:
    """Bytes per zigzag-coded pairing offset of ``count`` blocks (offsets lie in ``(-N, N)``)."""
    return 2 if 2 * count <= 2**16 else 4


def _pack(values: np.ndarray, width: int) -> np.ndarray:
    """Signed integers as zigzag codes of ``width`` bytes, in byte planes (low bytes first).

    Small magnitudes of either sign become small codes and the high-byte planes runs of
    zeros, which DEFLATE compresses well.
    """
    flat = values.reshape(-1).astype(np.int64)
    codes = np.where(flat >= 0, 2 * flat, -2 * flat - 1).astype(f"<u{width}")
    return codes.view(np.uint8).reshape(-1, width).T.reshape(-1)


def _unpack(planes: np.ndarray, width: int) -> np.ndarray:
    """Inverse of `_pack`."""
    codes = np.ascontiguousarray(planes.reshape(width, -1).T).view(f"<u{width}").reshape(-1)
    codes = codes.astype(np.int64)
    return np.where(codes % 2 == 0, codes // 2, -(codes + 1) // 2)


def _check_pair(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        got = (
            f"{image.dtype} {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ValueError(f"{name} must be a uint8 array (H, W, C), got {got}")


def rit_transform(
    original: np.ndarray, target: np.ndarray, block_size: int = 4, classes: int | None = None
) -> tuple[np.ndarray, bytes]:
    """Transform ``original`` towards ``target`` reversibly (see the module docstring).

    Args:
        original: ``uint8`` image ``(H, W, C)``.
        target: ``uint8`` image of the same shape.
        block_size: Side ``b`` of the square blocks (1 to 255).
        classes: Number of standard-deviation classes; ``None``: one block per class.

    Returns:
        ``(transformed, side_info)``: the ``uint8`` transformed image and the bytes
        `rit_restore` needs to undo it.

    Raises:
        ValueError: For images of another dtype or shape, or invalid settings.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> original = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        >>> target = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        >>> transformed, side = rit_transform(original, target, block_size=2)
        >>> np.array_equal(rit_restore(transformed, side), original)
        True
    """
    _check_pair(original, "original")
    _check_pair(target, "target")
    if original.shape != target.shape:
        raise ValueError(f"original {original.shape} and target {target.shape} differ in shape")
    if not 1 <= block_size <= 255 or (classes is not None and classes < 1):
        raise ValueError(
            f"need 1 <= block_size <= 255 and classes >= 1, got {block_size}, {classes}"
        )
    source, goal = _as_blocks(original, block_size), _as_blocks(target, block_size)
    count = len(source)
    if count == 0:  # the image is smaller than one block: nothing to transform
        return original.copy(), _HEADER.pack(_VERSION, block_size) + deflate(b"")
    groups = count if classes is None else min(classes, count)
    from_class, to_class = _classes(_spread(source), groups), _classes(_spread(goal), groups)
    # Classes have equal sizes in both images: the k-th block of one image in (class, scan)
    # order goes to the place of the k-th block of the other.
    pairing = np.empty(count, np.int64)
    pairing[np.argsort(to_class, kind="stable")] = np.argsort(from_class, kind="stable")
    placed = source[pairing]
    shift = np.rint(goal.mean((1, 2)) - placed.mean((1, 2))).astype(np.int64)
    shift = np.clip(shift, -placed.min((1, 2)), 255 - placed.max((1, 2)))
    placed = placed + shift[:, None, None, :]
    turned = np.stack([np.rot90(placed, k, axes=(1, 2)) for k in range(4)])
    errors = np.square(turned - goal[None]).reshape(4, count, -1).sum(2)
    rotation = errors.argmin(0)
    blocks = turned[rotation, np.arange(count)]
    transformed = _from_blocks(blocks, original).astype(np.uint8)
    offsets = _pack(pairing - np.arange(count), _offset_bytes(count))
    side = np.concatenate([offsets, _pack(shift.T, 2), rotation.astype(np.uint8)])
    return transformed, _HEADER.pack(_VERSION, block_size) + deflate(side.tobytes())


def rit_restore(transformed: np.ndarray, side_info: bytes) -> np.ndarray:
    """Undo `rit_transform`: the original image, bit for bit.

    Args:
        transformed: The ``uint8`` transformed image ``(H, W, C)``.
        side_info: The bytes `rit_transform` returned with it.

    Raises:
        ValueError: If the side information does not belong to an image of this shape.
    """
    _check_pair(transformed, "transformed")
    if len(side_info) < _HEADER.size:
        raise ValueError("the side information is shorter than the RIT header")
    version, block_size = _HEADER.unpack_from(side_info)
    if version != _VERSION or block_size < 1:
        raise ValueError(f"not RIT side information (version {version}, block {block_size})")
    blocks = _as_blocks(transformed, block_size)
    count, channels = len(blocks), transformed.shape[2]
    raw = np.frombuffer(inflate(side_info[_HEADER.size :]), np.uint8)
    width = _offset_bytes(count)
    shifts_at, rotations_at = width * count, (width + 2 * channels) * count
    if raw.size != rotations_at + count:
        raise ValueError(f"the side information has {raw.size} bytes, not for {count} blocks")
    if count == 0:
        return transformed.copy()
    pairing = _unpack(raw[:shifts_at], width) + np.arange(count)
    shift = _unpack(raw[shifts_at:rotations_at], 2).reshape(channels, count).T
    rotation = raw[rotations_at:].astype(np.int64)
    if not np.array_equal(np.sort(pairing), np.arange(count)) or rotation.max(initial=0) > 3:
        raise ValueError("the side information holds no valid pairing or rotation")
    source = np.empty_like(blocks)
    for index in range(count):
        block = np.rot90(blocks[index], -rotation[index], axes=(0, 1)) - shift[index]
        source[pairing[index]] = block
    if source.min() < 0 or source.max() > 255:
        raise ValueError("the restored pixels leave the 8-bit range")
    return _from_blocks(source, transformed).astype(np.uint8)


@register_protector("invprotect.rit/1")
class RIT(EmbeddingProtector):
    """RIT protector: the original, block-transformed towards its adversarial image.

    ``protect`` attacks the model (IGSM by default) to get the target ``T``, transforms the
    original towards ``T`` with `rit_transform` and hides the side information in the
    result with reversible data hiding; ``recover`` extracts it and undoes the
    transformation exactly. Recovery needs no model and no key.

    Args:
        model: The classifier or ensemble to fool, on the images' device; only `protect`
            uses it (``None`` for a recover-only protector).
        attack: Attack that makes the target: ``"igsm"`` or ``"cw"``.
        attack_params: Keyword arguments of the attack; unset ones keep its defaults.
        block_sizes: Block sides tried in order; the first whose side information fits
            the transformed image's capacity is used.
        classes: Standard-deviation classes for the pairing; ``None``: one block per class.

    Raises:
        ValueError: For an unknown attack or parameter, or invalid block settings.
    """

    def __init__(
        self,
        model: Model | None,
        attack: AttackName = "igsm",
        attack_params: Mapping[str, Any] | None = None,
        block_sizes: Sequence[int] = (4, 8, 16),
        classes: int | None = None,
    ) -> None:
        super().__init__(model, attack, attack_params)
        self.block_sizes = [int(size) for size in block_sizes]
        if not self.block_sizes or not all(1 <= size <= 255 for size in self.block_sizes):
            raise ValueError(f"block_sizes must be sides in 1..255, got {list(block_sizes)}")
        if classes is not None and classes < 1:
            raise ValueError(f"classes must be >= 1 or None, got {classes}")
        self.classes = classes

    @property
    def recovery_error_bound(self) -> float:
        """``0``: `rit_restore` undoes the transformation bit for bit."""
        return 0.0

    def config(self) -> dict[str, Any]:
        """The JSON sidecar: format, attack, block sizes and classes."""
        return {**super().config(), "block_sizes": self.block_sizes, "classes": self.classes}

    @classmethod
    def arguments_of(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """See `EmbeddingProtector.arguments_of`; also ``block_sizes`` and ``classes``."""
        return {
            **super().arguments_of(settings),
            "block_sizes": settings["block_sizes"],
            "classes": settings.get("classes"),
        }

    def hide(self, original: np.ndarray, adversarial: np.ndarray, index: int) -> np.ndarray:
        """Transform ``original`` towards ``adversarial`` at the first block size that fits.

        Raises:
            CapacityError: If the side information fits at no block size.
        """
        needed = []
        for size in self.block_sizes:
            transformed, side = rit_transform(original, adversarial, size, self.classes)
            room = capacity(transformed)
            if 8 * len(side) <= room:
                return embed(transformed, side)
            needed.append(f"{8 * len(side)} bits > {room} at block {size}")
        raise CapacityError(
            f"image {index}: the RIT side information fits at no block size ({'; '.join(needed)})"
        )

    def reveal(self, payload: bytes, cover: np.ndarray) -> tuple[np.ndarray, bool]:
        """`rit_restore`: always exact."""
        return rit_restore(cover, payload), True
