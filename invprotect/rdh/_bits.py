"""Bit strings as ``uint8`` arrays of 0s and 1s, most significant bit first."""

from __future__ import annotations

import numpy as np


def int_to_bits(value: int, width: int) -> np.ndarray:
    """The ``width`` low bits of ``value``, most significant first.

    Raises:
        ValueError: If ``value`` is negative or needs more than ``width`` bits.
    """
    if value < 0 or value >= 1 << width:
        raise ValueError(f"{value} does not fit in {width} unsigned bits")
    return ((value >> np.arange(width - 1, -1, -1)) & 1).astype(np.uint8)


def bits_to_int(bits: np.ndarray) -> int:
    """The unsigned integer written by `int_to_bits`."""
    value = 0
    for bit in bits.tolist():
        value = (value << 1) | int(bit)
    return value


def bytes_to_bits(data: bytes) -> np.ndarray:
    """The bits of ``data``, 8 per byte, most significant first."""
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def bits_to_bytes(bits: np.ndarray) -> bytes:
    """The bytes of a bit string whose length is a multiple of 8."""
    if bits.size % 8:
        raise ValueError(f"{bits.size} bits are not a whole number of bytes")
    return np.packbits(bits.astype(np.uint8)).tobytes()


def pack_fields(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Concatenate each ``values[k]`` written on ``widths[k]`` bits (all widths >= 1)."""
    values = np.asarray(values, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    if values.size == 0:
        return np.zeros(0, dtype=np.uint8)
    owner = np.repeat(np.arange(values.size), widths)
    starts = np.cumsum(widths) - widths
    shift = np.repeat(widths, widths) - 1 - (np.arange(owner.size) - starts[owner])
    return ((values[owner] >> shift) & 1).astype(np.uint8)


def unpack_fields(bits: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Invert `pack_fields`: the values of consecutive fields of the given widths."""
    widths = np.asarray(widths, dtype=np.int64)
    if widths.size == 0:
        return np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(widths.size), widths)
    starts = np.cumsum(widths) - widths
    shift = np.repeat(widths, widths) - 1 - (np.arange(owner.size) - starts[owner])
    contributions = bits[: owner.size].astype(np.int64) << shift
    return np.bincount(owner, weights=contributions, minlength=widths.size).astype(np.int64)


class BitReader:
    """Read consecutive fields from a bit string; reading past its end is a `ValueError`."""

    def __init__(self, bits: np.ndarray) -> None:
        self._bits = bits
        self._position = 0

    @property
    def remaining(self) -> int:
        """The number of bits not read yet."""
        return self._bits.size - self._position

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` bits."""
        if count > self.remaining:
            raise ValueError(
                f"the embedded stream ends early: {count} bits needed, {self.remaining} left"
            )
        chunk = self._bits[self._position : self._position + count]
        self._position += count
        return chunk

    def read_int(self, width: int) -> int:
        """The next ``width`` bits as an unsigned integer."""
        return bits_to_int(self.read(width))
