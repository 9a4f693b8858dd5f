"""Lossless PNG files with private ancillary chunks (atomic writes, exact 8-bit pixels).

invprotect stores what exact recovery needs inside the protected PNG itself, in a
private chunk that image editors drop when they re-encode a file: an altered file then
carries no (stale) recovery data.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from invprotect.checkpoint import atomic_write_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_chunk_type(chunk_type: bytes) -> None:
    if len(chunk_type) != 4 or not chunk_type.isalpha():
        raise ValueError(f"a PNG chunk type is 4 ASCII letters, got {chunk_type!r}")
    if not chunk_type[:2].islower() or not chunk_type[2:3].isupper():
        raise ValueError(
            f"chunk {chunk_type!r} must be ancillary and private (first two letters lower case) "
            "with the reserved third letter upper case"
        )


def encode_png(pixels: np.ndarray, chunks: Mapping[bytes, bytes] | None = None) -> bytes:
    """PNG bytes of ``uint8`` pixels (``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA).

    Args:
        pixels: The image.
        chunks: Private ancillary chunks to add, type -> data (for example ``b"ipRS"``).

    Raises:
        ValueError: For a wrong dtype or shape, or an invalid chunk type.
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected uint8 (H, W[, C]) pixels, got {pixels.dtype} {pixels.shape}")
    if pixels.ndim == 3 and pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected 3 or 4 channels, got {pixels.shape[2]}")
    info = PngImagePlugin.PngInfo()
    for chunk_type, data in (chunks or {}).items():
        _check_chunk_type(chunk_type)
        info.add(chunk_type, data)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_png(
    path: str | Path, pixels: np.ndarray, chunks: Mapping[bytes, bytes] | None = None
) -> None:
    """Write `encode_png`'s bytes to ``path`` atomically."""
    atomic_write_bytes(Path(path), encode_png(pixels, chunks))


def read_chunks(data: bytes) -> dict[bytes, bytes]:
    """The private ancillary chunks (type -> data) of PNG bytes; CRCs are verified.

    Raises:
        ValueError: If ``data`` is not a well-formed PNG.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    chunks: dict[bytes, bytes] = {}
    offset = len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunk_type = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        if len(body) != length or zlib.crc32(chunk_type + body) != crc:
            raise ValueError(f"corrupt PNG chunk {chunk_type!r} at byte {offset}")
        if chunk_type[:2].islower():
            chunks[chunk_type] = body
        if chunk_type == b"IEND":
            break
        offset += 12 + length
    return chunks
