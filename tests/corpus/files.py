"""Image files for the bad-input corpus, good and bad, made from code (no committed binaries).

Every function returns the bytes of one file; `write` puts them on disk. PNG files are
taken apart and put together again with `png_chunks` and `png_assemble`, which recompute
the CRCs, so that a test can change exactly one thing in a file.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write(path: Path | bytes, data: bytes) -> Path | bytes:
    """Write ``data`` to ``path`` (a `Path` or a raw ``bytes`` path), making its folders."""
    if isinstance(path, bytes):
        with open(path, "wb") as file:
            file.write(data)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth, seeded ``uint8`` pixels ``(H, W[, C])`` with some noise (a photo stand-in)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    planes = []
    for c in range(channels):
        phase = rng.uniform(0, 2 * np.pi)
        wave = 127 + 90 * np.sin(x / (3 + c) + phase) * np.cos(y / (4 + c) - phase)
        planes.append(wave + rng.normal(0, 12, (height, width)))
    out = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    return out[..., 0] if channels == 1 else out


def save(image: Image.Image, format: str, **params: object) -> bytes:
    """The bytes of ``image`` saved by PIL as ``format`` with ``params``."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def rgb(height: int = 8, width: int = 8, seed: int = 0, format: str = "PNG") -> bytes:
    """An 8-bit RGB image file."""
    return save(Image.fromarray(pixels(height, width, 3, seed), "RGB"), format)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks ``(type, body)`` of PNG bytes, in order (CRCs not checked)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def png_chunk(chunk_type: bytes, body: bytes, crc: int | None = None) -> bytes:
    """One PNG chunk; the right CRC unless ``crc`` is given."""
    if crc is None:
        crc = zlib.crc32(chunk_type + body)
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", crc)


def png_assemble(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """PNG bytes from chunks, every CRC recomputed."""
    return PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in chunks)


def raw_png(samples: np.ndarray, color_type: int, bit_depth: int) -> bytes:
    """A PNG written by hand (PIL cannot write 16-bit colour): rows of big-endian samples.

    Args:
        samples: ``(H, W[, C])`` unsigned integers.
        color_type: 0 gray, 2 RGB, 4 gray + alpha, 6 RGBA.
        bit_depth: 8 or 16.
    """
    height, width = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = samples.astype(dtype).reshape(height, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return png_assemble([(b"IHDR", header), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")])


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB and whose data hold one row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * (1 + 3 * min(width, 4096)))
    return png_assemble([(b"IHDR", header), (b"IDAT", data), (b"IEND", b"")])


def flip_idat_byte(data: bytes) -> bytes:
    """PNG bytes with one byte of the image data flipped (its CRC left as it was)."""
    out, offset = bytearray(data), len(PNG_SIGNATURE)
    while offset < len(out):
        (length,) = struct.unpack(">I", out[offset : offset + 4])
        if out[offset + 4 : offset + 8] == b"IDAT":
            out[offset + 8 + length // 2] ^= 0xFF
            return bytes(out)
        offset += 12 + length
    raise ValueError("no IDAT chunk")


def frames(count: int, mode: str, height: int = 8, width: int = 8) -> list[Image.Image]:
    """``count`` different images of ``mode`` (for animations and multi-page files)."""
    return [
        Image.fromarray(pixels(height, width, 3, seed), "RGB").convert(mode)
        for seed in range(count)
    ]


def animated(format: str, count: int = 3) -> bytes:
    """An animation (GIF, APNG as ``PNG``, WebP) or a multi-page TIFF of ``count`` frames."""
    first, *rest = frames(count, "P" if format == "GIF" else "RGB")
    return save(first, format, save_all=True, append_images=rest, duration=100, loop=0)


def palette_with_duplicates() -> bytes:
    """A palette PNG whose palette lists one colour twice, both entries used."""
    indices = (np.arange(64).reshape(8, 8) % 4).astype(np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([10, 20, 30, 10, 20, 30, 200, 100, 50, 0, 0, 0])
    return save(image, "PNG")


def palette_with_transparency(single: bool) -> bytes:
    """A 16-colour palette PNG with a tRNS chunk (one transparent index, or one per entry)."""
    image = Image.fromarray(pixels(8, 8, 3, 5), "RGB").quantize(16)
    transparency = 0 if single else bytes(range(0, 256, 16))
    return save(image, "PNG", transparency=transparency)


def exif_bytes() -> bytes:
    """EXIF with a camera model and a description."""
    exif = Image.Exif()
    exif[0x0110] = "Corpus Camera 1"  # Model
    exif[0x010E] = "a test image with EXIF"  # ImageDescription
    return exif.tobytes()


def icc_profile() -> bytes:
    """An sRGB ICC profile."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_with_text() -> bytes:
    """An RGB PNG with tEXt, zTXt and iTXt chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "corpus")
    info.add_text("Comment", "compressed " * 20, zip=True)
    info.add_itxt("Title", "unicode title \u00e9\u6f22", lang="en")
    return save(Image.fromarray(pixels(8, 8, 3, 6), "RGB"), "PNG", pnginfo=info)


def metadata_of(image: Image.Image) -> dict[str, object]:
    """The metadata a user would miss: EXIF, ICC profile and PNG text chunks."""
    found: dict[str, object] = {}
    exif = image.getexif()
    if len(exif):
        found["exif"] = dict(exif)
    if image.info.get("icc_profile"):
        found["icc_profile"] = image.info["icc_profile"]
    text = getattr(image, "text", None)
    if text:
        found["text"] = dict(text)
    return found


def same_pixels(a: Image.Image, b: Image.Image) -> str | None:
    """Why two images differ (mode, size, pixels, palette, transparency), or ``None``."""
    if a.mode != b.mode or a.size != b.size:
        return f"{a.mode} {a.size} != {b.mode} {b.size}"
    if a.tobytes() != b.tobytes():
        return "pixels differ"
    if a.mode == "P" and a.getpalette() != b.getpalette():
        return "palettes differ"
    if a.info.get("transparency") != b.info.get("transparency"):
        return f"transparency {a.info.get('transparency')!r} != {b.info.get('transparency')!r}"
    return None


def converted(
    mode: str, format: str = "PNG", size: tuple[int, int] = (8, 8), **params: object
) -> Callable[[], bytes]:
    """A maker of an image of ``mode`` (``P``: 16 colours) saved as ``format`` with ``params``."""

    def make() -> bytes:
        image = Image.fromarray(pixels(size[1], size[0], 3, 11), "RGB")
        image = image.quantize(16) if mode == "P" else image.convert(mode)
        return save(image, format, **params)

    return make
