"""Lossless PNG files with private ancillary chunks (atomic writes, exact 8-bit pixels).

invprotect stores what exact recovery needs inside the protected PNG itself, in a
private chunk that image editors drop when they re-encode a file: an altered file then
carries no (stale) recovery data.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from invprotect.files.atomic import atomic_write_bytes

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


def chunks_if_png(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """`iter_chunks` of PNG data; no chunks for another format (a re-encoded, altered file)."""
    return iter_chunks(data) if data.startswith(PNG_SIGNATURE) else iter(())


def iter_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every chunk (type, body) of PNG bytes in file order, up to ``IEND``; CRCs are verified.

    Raises:
        ValueError: If ``data`` is not a well-formed PNG.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    offset = len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunk_type = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        crc_bytes = data[offset + 8 + length : offset + 12 + length]
        if len(body) != length or len(crc_bytes) != 4:
            raise ValueError(f"truncated PNG chunk {chunk_type!r} at byte {offset}")
        if zlib.crc32(chunk_type + body) != struct.unpack(">I", crc_bytes)[0]:
            raise ValueError(f"corrupt PNG chunk {chunk_type!r} at byte {offset}")
        yield chunk_type, body
        if chunk_type == b"IEND":
            return
        offset += 12 + length
    raise ValueError(f"truncated PNG: no IEND chunk before byte {len(data)}")


def read_chunks(data: bytes) -> dict[bytes, bytes]:
    """The private ancillary chunks (type -> data) of PNG bytes; CRCs are verified.

    Raises:
        ValueError: If ``data`` is not a well-formed PNG.
    """
    return {kind: body for kind, body in iter_chunks(data) if kind[:2].islower()}


def chunk_bytes(chunk_type: bytes, body: bytes) -> bytes:
    """One PNG chunk as it appears in a file: length, type, body, CRC."""
    crc = zlib.crc32(chunk_type + body)
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", crc)


def insert_chunks(
    data: bytes, after_header: bytes = b"", before_data: bytes = b"", before_end: bytes = b""
) -> bytes:
    """PNG bytes with encoded chunks inserted after ``IHDR``, before ``IDAT`` and before ``IEND``.

    Raises:
        ValueError: If ``data`` is not a well-formed PNG.
    """
    parts = [PNG_SIGNATURE]
    seen_data = False
    for kind, body in iter_chunks(data):
        if kind == b"IDAT" and not seen_data:
            parts.append(before_data)
            seen_data = True
        if kind == b"IEND":
            parts.append(before_end)
        parts.append(chunk_bytes(kind, body))
        if kind == b"IHDR":
            parts.append(after_header)
    return b"".join(parts)
