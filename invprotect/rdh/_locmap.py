"""Overflow and underflow: pixels near 0 or 255 are pulled inside, and a location map says how.

A pass changes a pixel by ``d`` with ``t_n <= d <= t_p``, so before embedding every pixel
that can be changed is clamped to ``[-t_n, 255 - t_p]``. Each pixel that ends up on one
of those two bounds gets a location-map entry: ``-t_n - v`` on ``bit_length(-t_n)`` bits
for the lower bound, ``v - (255 - t_p)`` on ``bit_length(t_p)`` bits for the upper bound
(``v`` the original value; ``0`` for a pixel that was already there), in raster order.
The decoder finds the same pixels after undoing the passes, so the map needs no
positions. It is carried raw or zlib-compressed, whichever is shorter.
"""

from __future__ import annotations

import zlib

import numpy as np

from invprotect.rdh._bits import (
    BitReader,
    bytes_to_bits,
    int_to_bits,
    pack_fields,
    unpack_fields,
)


def _bounds(t_n: int, t_p: int) -> tuple[int, int]:
    return -t_n, 255 - t_p


def _entries(values: np.ndarray, t_n: int, t_p: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of the (clamped) ``values`` carry an entry, and the entries' widths."""
    lower, upper = _bounds(t_n, t_p)
    at_lower = (values == lower) if lower > 0 else np.zeros(values.shape, dtype=bool)
    at_upper = values == upper
    widths = np.where(at_lower, lower.bit_length(), t_p.bit_length())
    has_entry = at_lower | at_upper
    return has_entry, widths[has_entry]


def clamp(
    x: np.ndarray, changeable: np.ndarray, t_n: int, t_p: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clamp the ``changeable`` pixels (flat indices, ascending) and write the location map.

    Returns:
        ``(clamped, map_bits)``: a new array and the uncompressed location map.
    """
    lower, upper = _bounds(t_n, t_p)
    original = x.reshape(-1)[changeable]
    values = np.clip(original, lower, upper)
    has_entry, widths = _entries(values, t_n, t_p)
    entries = np.abs(original - values)[has_entry]
    clamped = x.copy()
    clamped.reshape(-1)[changeable] = values
    return clamped, pack_fields(entries, widths)


def map_length(x: np.ndarray, changeable: np.ndarray, t_n: int, t_p: int) -> int:
    """The number of location-map bits for the clamped array ``x``."""
    _, widths = _entries(x.reshape(-1)[changeable], t_n, t_p)
    return int(widths.sum())


def unclamp(
    x: np.ndarray, changeable: np.ndarray, t_n: int, t_p: int, map_bits: np.ndarray
) -> np.ndarray:
    """Invert `clamp` with its location map.

    Raises:
        ValueError: If an entry is out of range (the map does not belong to ``x``).
    """
    lower, upper = _bounds(t_n, t_p)
    values = x.reshape(-1)[changeable]
    has_entry, widths = _entries(values, t_n, t_p)
    entries = unpack_fields(map_bits, widths)
    limits = np.where(values[has_entry] == upper, t_p, lower)
    if np.any(entries > limits):
        raise ValueError("the location map does not fit the image (it was altered)")
    restored_values = values.copy()
    restored_values[has_entry] += np.where(values[has_entry] == upper, entries, -entries)
    restored = x.copy()
    restored.reshape(-1)[changeable] = restored_values
    return restored


def encode_map(map_bits: np.ndarray, length_width: int) -> np.ndarray:
    """The map as carried: flag ``0`` and the raw bits, or flag ``1``, a byte count, zlib.

    ``length_width`` is the width of the byte count; zlib is used only when it is shorter
    and its byte count fits.
    """
    raw = np.concatenate([np.zeros(1, dtype=np.uint8), map_bits])
    if map_bits.size == 0:
        return raw
    packed = zlib.compress(np.packbits(map_bits).tobytes(), 9)
    if len(packed) >= 1 << length_width:
        return raw
    compressed = np.concatenate(
        [np.ones(1, dtype=np.uint8), int_to_bits(len(packed), length_width), bytes_to_bits(packed)]
    )
    return compressed if compressed.size < raw.size else raw


def decode_map(reader: BitReader, map_bits: int, length_width: int) -> np.ndarray:
    """Read a map of ``map_bits`` bits written by `encode_map`.

    Raises:
        ValueError: If the stream ends early or the compressed map is corrupt.
    """
    if reader.read_int(1) == 0:
        return reader.read(map_bits)
    size = reader.read_int(length_width)
    data = np.packbits(reader.read(8 * size)).tobytes()
    expected = -(-map_bits // 8)
    decompressor = zlib.decompressobj()
    try:  # bounded: altered data cannot inflate to more than the map's size
        unpacked = decompressor.decompress(data, expected + 1)
    except zlib.error as error:
        raise ValueError(f"the compressed location map is corrupt ({error})") from None
    bits = np.unpackbits(np.frombuffer(unpacked, dtype=np.uint8))
    if len(unpacked) != expected or not decompressor.eof or bits[map_bits:].any():
        raise ValueError("the location map does not fit the image (it was altered)")
    return bits[:map_bits]
