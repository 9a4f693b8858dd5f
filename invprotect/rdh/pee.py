"""Reversible data hiding in 8-bit images: sorted rhombus prediction-error expansion.

The scheme is the two-pass rhombus predictor with sorting of V. Sachnev, H. J. Kim,
J. Nam, S. Suresh and Y. Q. Shi, "Reversible watermarking algorithm using sorting and
prediction", IEEE Transactions on Circuits and Systems for Video Technology 19(7),
989-999, 2009, with the histogram-shifting form of prediction-error expansion of D. M.
Thodi and J. J. Rodríguez, "Expansion embedding techniques for reversible
watermarking", IEEE Transactions on Image Processing 16(3), 721-730, 2007 (errors in
``[t_n, t_p)`` carry a bit, the others are shifted), and the overflow handling of X. Li,
B. Li, B. Yang and T. Zeng, "General framework to histogram-shifting-based reversible
data hiding", IEEE Transactions on Image Processing 22(6), 2181-2191, 2013 (pixels near
0 and 255 are pulled inside first and a compressed location map, carried with the
payload, undoes that at the end).

Pixels are the elements of the image seen as ``(H, W, C)`` (a gray ``(H, W)`` image has
``C = 1``), numbered in C order: ``k = (i * W + j) * C + c``. Each channel is a plane of
its own: a pixel's prediction is the rounded mean of its 4-neighbours in its plane that
lie inside the image, and its complexity is their variance.

A configuration is a bin pair ``t_n <= 0 < t_p`` and a mirror flag. The pairs are the
two-sided ``(0, 1), (-1, 1), (-1, 2), (-2, 2), ..., (-15, 16)`` and the one-sided
``(0, 2), ..., (0, 16)``, tried by number of bins ``t_p - t_n`` (two-sided first on a
tie), each without and then with the mirror. A pass changes a pixel by ``t_n`` to
``t_p``, so a one-sided pair never lowers a pixel; the mirror embeds into ``255 - x``
instead, which never raises one: images with large areas at 255 (or at 0) then need no
location map for them. `embed` uses the first configuration whose capacity holds the
payload:

1. The ``R = 25 + 2 * w`` first pixels are reserved for the header, with
   ``w = (H * W * C).bit_length()``; their least significant bits (LSBs) are saved and
   cleared. Every other pixel with a neighbour is *changeable*. With the mirror, every
   value ``x`` becomes ``255 - x`` until step 4.
2. Changeable pixels are clamped to ``[-t_n, 255 - t_p]``. The location map has one
   entry per changeable pixel that then lies on a bound, in pixel order: ``-t_n - v`` on
   ``bit_length(-t_n)`` bits at the lower bound (none when ``t_n = 0``),
   ``v - (255 - t_p)`` on ``bit_length(t_p)`` bits at the upper one, ``v`` being the
   value before clamping. The extractor finds the same pixels after undoing the passes,
   so no positions are stored.
3. The stream ``map | reserved LSBs | payload | CRC32`` is embedded in two passes:
   first the changeable pixels with ``i + j`` even (the cross set), then those with
   ``i + j`` odd (the dot set), each in order of increasing complexity. In a pass, an
   error ``e = x - prediction`` in ``[t_n, t_p)`` becomes ``2e + b``, ``e >= t_p`` becomes
   ``e + t_p`` and ``e < t_n`` becomes ``e + t_n``, up to the pixel that takes the pass's
   last bit; later pixels are left alone. The cross pass takes half the stream (rounded
   up), or as much as it can when the dot pass cannot take the rest of that split.
4. The mirror is undone and the header written in the LSBs of the reserved pixels.

Extraction reads the header, clears the reserved LSBs, mirrors if the header says so,
undoes the dot pass and then the cross pass (each sees the same neighbours, hence the
same predictions and order, as when it was embedded), unclamps with the map, mirrors
back, puts back the reserved LSBs and checks the CRC.

Layout, all fields unsigned, most significant bit first:

| where | field | bits |
|---|---|---|
| header (reserved LSBs) | magic `0x5244` | 16 |
| | `-t_n` | 4 |
| | `t_p - 1` | 4 |
| | mirror | 1 |
| | cross pixels processed | `w` |
| | dot pixels processed | `w` |
| stream | map flag: 0 raw, 1 zlib | 1 |
| | zlib byte count (flag 1 only) | `w` |
| | map: raw bits, or zlib bytes | as needed |
| | original LSBs of the reserved pixels | `R` |
| | payload | 8 per byte |
| | CRC32 of the payload bytes followed by the cover's bytes | 32 |

The map is raw unless zlib (level 9) makes it shorter. The CRC covers the restored cover
too, so a marked image altered afterwards is rejected rather than giving a wrong payload
or cover, unless its CRC32 happens to match (about one chance in 2**32).

`capacity` is guaranteed, not estimated: bits embedded in the cross pass move the dot
pass's predictions, so the capacity of the dot pass depends on the payload's content;
`capacity` counts only the dot pixels that carry a bit whatever those bits are. `embed`
accepts exactly the payloads of at most `capacity` bits and always succeeds on them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from invprotect.rdh._bits import BitReader, bits_to_bytes, bytes_to_bits, int_to_bits
from invprotect.rdh._locmap import clamp, decode_map, encode_map, map_length, unclamp
from invprotect.rdh._rhombus import (
    count_expandable,
    count_surely_expandable,
    embed_pass,
    extract_pass,
    neighbour_count,
)

__all__ = ["MAGIC", "CapacityError", "capacity", "capacity_bpp", "embed", "extract"]

MAGIC = 0x5244
"""The 16-bit tag that opens the header of a marked image."""

_MAGIC_BITS = 16
_THRESHOLD_BITS = 4
_CRC_BITS = 32
_BIN_PAIRS = sorted(
    {(-(k // 2), k - k // 2) for k in range(1, 32)} | {(0, t_p) for t_p in range(2, 17)},
    key=lambda pair: (pair[1] - pair[0], pair[0] == 0),
)
_CONFIGS = tuple((t_n, t_p, mirror) for t_n, t_p in _BIN_PAIRS for mirror in (False, True))
"""Candidate ``(t_n, t_p, mirror)``, roughly from least to most distortion."""


class CapacityError(ValueError):
    """The payload does not fit in the cover."""


@dataclass(frozen=True)
class _Layout:
    """Position-only facts about an image shape, shared by embedder and extractor."""

    shape: tuple[int, int, int]
    width: int
    reserved: int
    count: np.ndarray
    cross: np.ndarray
    dot: np.ndarray
    changeable: np.ndarray


@dataclass(frozen=True)
class _Plan:
    """One configuration prepared for a cover: clamped pixels, stream prefix, capacity."""

    t_n: int
    t_p: int
    mirror: bool
    clamped: np.ndarray
    prefix: np.ndarray
    capacity: int
    """Guaranteed payload bits; negative when the side information alone does not fit."""


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(
            f"{name} must be a non-empty uint8 array of shape (H, W) or (H, W, C), got "
            f"{image.dtype} {image.shape}; convert 8-bit pixels with np.asarray(x, np.uint8)"
        )
    return np.ascontiguousarray(image)  # views (a permuted tensor) would be written as copies


def _layout(shape: tuple[int, ...]) -> _Layout | None:
    """The layout for an image ``shape``; ``None`` when it is too small for the header."""
    shape3 = (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)
    size = shape3[0] * shape3[1] * shape3[2]
    width = size.bit_length()
    reserved = _MAGIC_BITS + 2 * _THRESHOLD_BITS + 1 + 2 * width
    if size <= reserved:
        return None
    count = neighbour_count(shape3)
    rows, columns = np.indices(shape3[:2])
    parity = np.broadcast_to(((rows + columns) % 2)[:, :, None], shape3).reshape(-1)
    usable = (count.reshape(-1) > 0) & (np.arange(size) >= reserved)
    return _Layout(
        shape=shape3,
        width=width,
        reserved=reserved,
        count=count,
        cross=np.flatnonzero(usable & (parity == 0)),
        dot=np.flatnonzero(usable & (parity == 1)),
        changeable=np.flatnonzero(usable),
    )


def _plan(
    cleared: np.ndarray, lsbs: np.ndarray, layout: _Layout, t_n: int, t_p: int, mirror: bool
) -> _Plan:
    """Clamp, write the stream prefix and bound the capacity for one configuration."""
    clamped, map_bits = clamp(255 - cleared if mirror else cleared, layout.changeable, t_n, t_p)
    prefix = np.concatenate([encode_map(map_bits, layout.width), lsbs])
    cross_bits = count_expandable(clamped, layout.cross, layout.count, t_n, t_p)
    # The bound holds for the state the fallback in `_embed_stream` produces: a full cross pass.
    low = high = clamped
    if cross_bits:
        low, _ = embed_pass(
            clamped, layout.cross, layout.count, np.zeros(cross_bits, np.uint8), t_n, t_p
        )
        high, _ = embed_pass(
            clamped, layout.cross, layout.count, np.ones(cross_bits, np.uint8), t_n, t_p
        )
    dot_bits = count_surely_expandable(low, high, layout.dot, layout.count, t_n, t_p)
    capacity = cross_bits + dot_bits - prefix.size - _CRC_BITS
    return _Plan(t_n, t_p, mirror, clamped, prefix, capacity)


def _plans(cover: np.ndarray) -> Iterator[tuple[_Layout, _Plan]]:
    """Every configuration prepared for ``cover``, in the order of `_CONFIGS`."""
    layout = _layout(cover.shape)
    if layout is None:
        return
    cleared = cover.astype(np.int64).reshape(layout.shape)
    lsbs = (cleared.reshape(-1)[: layout.reserved] & 1).astype(np.uint8)
    cleared.reshape(-1)[: layout.reserved] -= lsbs
    for config in _CONFIGS:
        yield layout, _plan(cleared, lsbs, layout, *config)


def _embed_stream(plan: _Plan, layout: _Layout, stream: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Split ``stream`` over the two passes: half and half, else the cross pass first.

    Returns:
        ``(marked, cross_end, dot_end)``, the marked pixels still mirrored if the plan is.
    """
    cross_bits = count_expandable(plan.clamped, layout.cross, layout.count, plan.t_n, plan.t_p)
    splits = dict.fromkeys((min((stream.size + 1) // 2, cross_bits), min(stream.size, cross_bits)))
    for split in splits:  # split <= cross_bits: the cross pass always takes its share
        first = embed_pass(
            plan.clamped, layout.cross, layout.count, stream[:split], plan.t_n, plan.t_p
        )
        second = embed_pass(first[0], layout.dot, layout.count, stream[split:], plan.t_n, plan.t_p)
        if second is not None:
            return second[0], first[1], second[1]
    raise RuntimeError(  # the last split is the one `_plan` bounds
        f"internal error: {stream.size} bits did not fit in a plan with room for them; "
        "please report this image"
    )


def capacity(cover: np.ndarray) -> int:
    """The number of payload bits `embed` can hide in ``cover``.

    `embed` succeeds for every payload of at most this many bits and raises
    `CapacityError` for any longer one. It is ``0``, and `embed` refuses even an empty
    payload, when the image cannot carry the side information (header, location map,
    CRC): an image too small for the header, or one with no smooth region, such as noise.

    Args:
        cover: ``uint8`` image, ``(H, W)`` or ``(H, W, C)``.

    Raises:
        ValueError: For a wrong dtype or shape.
    """
    return max([0, *(plan.capacity for _, plan in _plans(_check_image(cover, "cover")))])


def capacity_bpp(cover: np.ndarray) -> float:
    """`capacity` per pixel position: bits divided by ``H * W`` (all channels together).

    Args:
        cover: ``uint8`` image, ``(H, W)`` or ``(H, W, C)``.
    """
    return capacity(cover) / (cover.shape[0] * cover.shape[1])


def embed(cover: np.ndarray, payload: bytes) -> np.ndarray:
    """Hide ``payload`` in ``cover`` so that `extract` returns both exactly.

    Args:
        cover: ``uint8`` image, ``(H, W)`` or ``(H, W, C)``; not modified.
        payload: The bytes to hide.

    Returns:
        The marked image, same shape and dtype as ``cover``.

    Raises:
        CapacityError: If the payload has more bits than `capacity` of the cover.
        ValueError: For a wrong dtype or shape.

    Example:
        >>> cover = (np.arange(32 * 32 * 3) % 7 + 100).astype(np.uint8).reshape(32, 32, 3)
        >>> payload, restored = extract(embed(cover, b"key"))
        >>> payload, np.array_equal(restored, cover)
        (b'key', True)
    """
    cover = _check_image(cover, "cover")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    best = -1
    for layout, plan in _plans(cover):
        if 8 * len(data) <= plan.capacity:
            return _embed_plan(cover, data, layout, plan)
        best = max(best, plan.capacity)
    raise CapacityError(
        f"payload of {8 * len(data)} bits exceeds the capacity of {max(best, 0)} bits "
        f"for this {cover.shape} image"
        + ("" if best >= 0 else " (it cannot carry even the side information)")
    )


def _embed_plan(cover: np.ndarray, data: bytes, layout: _Layout, plan: _Plan) -> np.ndarray:
    crc = zlib.crc32(data + cover.tobytes())
    stream = np.concatenate([plan.prefix, bytes_to_bits(data), int_to_bits(crc, _CRC_BITS)])
    marked, cross_end, dot_end = _embed_stream(plan, layout, stream.astype(np.uint8))
    if plan.mirror:
        marked = 255 - marked
    header = np.concatenate(
        [
            int_to_bits(MAGIC, _MAGIC_BITS),
            int_to_bits(-plan.t_n, _THRESHOLD_BITS),
            int_to_bits(plan.t_p - 1, _THRESHOLD_BITS),
            int_to_bits(int(plan.mirror), 1),
            int_to_bits(cross_end, layout.width),
            int_to_bits(dot_end, layout.width),
        ]
    )
    marked.reshape(-1)[: layout.reserved] += header
    return marked.astype(np.uint8).reshape(cover.shape)


def extract(marked: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Recover the payload and the exact cover from an image made by `embed`.

    Args:
        marked: ``uint8`` image, ``(H, W)`` or ``(H, W, C)``; not modified.

    Returns:
        ``(payload, cover)``: the hidden bytes and the original image, bit for bit.

    Raises:
        ValueError: For a wrong dtype or shape, or when ``marked`` carries no valid
            embedding (never marked, or altered after marking).
    """
    marked = _check_image(marked, "marked")
    try:
        return _extract(marked)
    except ValueError as error:
        raise ValueError(f"no valid embedding in this {marked.shape} image: {error}") from None


def _extract(marked: np.ndarray) -> tuple[bytes, np.ndarray]:
    layout = _layout(marked.shape)
    if layout is None:
        raise ValueError("it is too small to hold the header")
    pixels = marked.astype(np.int64).reshape(layout.shape)
    header_bits = (pixels.reshape(-1)[: layout.reserved] & 1).astype(np.uint8)
    header = BitReader(header_bits)
    if header.read_int(_MAGIC_BITS) != MAGIC:
        raise ValueError("the header's magic number is missing")
    t_n = -header.read_int(_THRESHOLD_BITS)
    t_p = header.read_int(_THRESHOLD_BITS) + 1
    mirror = bool(header.read_int(1))
    cross_end = header.read_int(layout.width)
    dot_end = header.read_int(layout.width)
    if cross_end > layout.cross.size or dot_end > layout.dot.size:
        raise ValueError("the header names more pixels than the image has")
    pixels.reshape(-1)[: layout.reserved] -= header_bits
    if mirror:
        pixels = 255 - pixels
    pixels, dot_bits = extract_pass(pixels, layout.dot, layout.count, dot_end, t_n, t_p)
    pixels, cross_bits = extract_pass(pixels, layout.cross, layout.count, cross_end, t_n, t_p)
    values = pixels.reshape(-1)[layout.changeable]
    if values.size and (values.min() < -t_n or values.max() > 255 - t_p):
        raise ValueError("restored pixels fall outside the embedding range")
    stream = BitReader(np.concatenate([cross_bits, dot_bits]))
    map_bits = decode_map(stream, map_length(pixels, layout.changeable, t_n, t_p), layout.width)
    pixels = unclamp(pixels, layout.changeable, t_n, t_p, map_bits)
    if mirror:
        pixels = 255 - pixels
    pixels.reshape(-1)[: layout.reserved] += stream.read(layout.reserved)
    rest = stream.read(stream.remaining)
    if rest.size < _CRC_BITS or (rest.size - _CRC_BITS) % 8:
        raise ValueError(f"the stream's {rest.size} payload and CRC bits are not whole bytes")
    payload = bits_to_bytes(rest[:-_CRC_BITS])
    cover = pixels.astype(np.uint8).reshape(marked.shape)
    expected = int(rest[-_CRC_BITS:].astype(np.int64) @ (1 << np.arange(31, -1, -1)))
    if zlib.crc32(payload + cover.tobytes()) != expected:
        raise ValueError("the CRC32 does not match (the image was altered after marking)")
    return payload, cover
