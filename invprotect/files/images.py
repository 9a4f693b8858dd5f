"""Reading image files into tensors and back, refusing what would not come back whole.

`open_image` refuses, with a specific message, files that cannot be kept bit for bit:
16 bits per channel (PIL would silently cut them to 8), more than one frame (animated GIF,
APNG, multi-page TIFF, MPO), too many pixels, or an unsupported mode. `read_source` also
collects the file's metadata (`image_metadata`: every ancillary PNG chunk verbatim; EXIF,
ICC profile, DPI, comments and XMP of other formats) and refuses files whose metadata a
PNG could not carry; `encode_recovered` writes it back into the recovered PNG.
`prepare_image` and `rebuild_image` split an image into the RGB pixels a protector sees
and back into its own mode; `pad_to_multiple` pads them to a protector's sides;
`pixel_digest` and `rgb_digest` are the digests a record and a manifest keep.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, PngImagePlugin, UnidentifiedImageError
from torch import Tensor

from invprotect.files.png import chunk_bytes, insert_chunks, iter_chunks

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""File suffixes (lower case) treated as images when scanning folders."""

EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
"""PIL modes with 8 bits (or fewer) per channel, which convert to RGB without loss of range."""


class BadImageError(ValueError):
    """An image file cannot be used: empty, truncated, not an image, or an unsupported mode."""


_TIFF_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 282, 283, 284, 296, 317, 320}
    | {322, 323, 324, 325, 338, 339, 347, 530, 531, 532, 34675}
)
"""TIFF tags that describe the pixels' storage (or resolution, ICC): all other tags carry
metadata that a PNG cannot hold, and such files are refused."""


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file, refusing what would not come back whole.

    Raises:
        BadImageError: With a specific reason (empty file, not a regular file, truncated
            data, not an image, too many pixels, 16 bits per channel, more than one frame,
            unsupported mode such as floating point).
    """
    path = Path(path)
    try:
        data = _read_file(path)
    except OSError as error:
        raise BadImageError(f"{path}: cannot read ({error.strerror or error})") from None
    return _decode(path, data)


def _read_file(path: Path) -> bytes:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise BadImageError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise BadImageError(f"{path}: empty file (0 bytes)")
    return path.read_bytes()


def _decode(path: Path, data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            frames = getattr(image, "n_frames", 1)
            image.seek(0)
            image.load()
    except UnidentifiedImageError:
        raise BadImageError(f"{path}: not an image file PIL can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(f"{path}: too many pixels ({error})") from None
    except Exception as error:  # PIL's decoders raise many kinds on hostile data
        raise BadImageError(f"{path}: cannot decode ({type(error).__name__}: {error})") from None
    if frames > 1:
        raise BadImageError(
            f"{path}: {frames} frames (animated or multi-page {image.format}); only the first "
            "would be kept, so it is refused; split it into single images first"
        )
    if image.mode not in EIGHT_BIT_MODES:
        raise BadImageError(
            f"{path}: unsupported mode {image.mode!r} (16-bit or floating-point); "
            "convert it to 8-bit RGB first"
        )
    if _bits_per_channel(image, data) > 8:
        raise BadImageError(
            f"{path}: 16 bits per channel; it would be cut to 8 bits, so it is refused "
            "(convert it to 8-bit first if that loss is acceptable)"
        )
    return image


def _bits_per_channel(image: Image.Image, data: bytes) -> int:
    """Bits per channel as stored (PIL opens 16-bit RGB PNG and TIFF files as 8-bit)."""
    if image.format == "PNG" and len(data) > 24:
        return data[24]  # the IHDR bit depth
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258, (8,))
        return max(bits) if isinstance(bits, tuple) and bits else int(bits)
    return 8


def read_rgb(path: str | Path) -> Tensor:
    """Read an image file as an RGB ``uint8`` tensor of shape ``(3, H, W)``.

    Grayscale and palette images are expanded to RGB; an alpha channel is dropped
    (composited on nothing: the colour values are kept as stored).

    Raises:
        BadImageError: See `open_image`.
    """
    image = open_image(path).convert("RGB")
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


PROTECTABLE_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
"""PIL modes that protect/recover handle exactly (others are refused with a message)."""

_IGNORED_INFO = frozenset(
    {"jfif", "jfif_version", "jfif_unit", "jfif_density", "progressive", "progression"}
    | {"adobe", "adobe_transform", "compression", "resolution", "loop", "duration"}
    | {"background", "version", "timestamp"}
)
"""Keys of PIL's ``info`` that describe how a file was encoded, not what it holds."""
_KEPT_INFO = frozenset({"exif", "icc_profile", "dpi", "comment", "xmp", "transparency"})
_JPEG_SEGMENTS = {
    "APP0": (b"JFIF\0",),
    "APP1": (b"Exif\0", b"http://ns.adobe.com/xap/1.0/\0"),
    "APP2": (b"ICC_PROFILE\0",),
    "APP14": (b"Adobe",),
}
"""JPEG application segments whose content the metadata keeps (or that only describe coding)."""
_PNG_FRAME_CHUNKS = frozenset({b"IHDR", b"IDAT", b"IEND", b"acTL", b"fcTL"})
"""PNG chunks rewritten by the encoder (or animation control of a one-frame APNG)."""


def pixel_digest(image: Image.Image) -> str:
    """SHA-256 of an image's mode, size, pixels and palette: equal digests mean equal images."""
    digest = hashlib.sha256(f"{image.mode}|{image.width}x{image.height}|".encode())
    for _, band in _bands(image):  # the bytes of image.tobytes(), without a full-size copy
        digest.update(band.tobytes())
    if image.mode == "P" and image.getpalette() is not None:
        digest.update(bytes(image.getpalette()))
    return digest.hexdigest()


@dataclass
class SourceImage:
    """An image prepared for protection: RGB pixels plus what rebuilding the original needs.

    Attributes:
        rgb: ``uint8`` tensor ``(3, H, W)``.
        alpha: ``uint8`` array ``(H, W)`` kept losslessly beside the RGB pixels, or ``None``.
        mode: The original PIL mode.
        extra: Private data for `rebuild_image` and `encode_recovered` (palette,
            transparency, indices, metadata); the record stores it encrypted.
        digest: `pixel_digest` of the original (never stored in the clear).
    """

    rgb: Tensor
    alpha: np.ndarray | None
    mode: str
    extra: dict[str, Any]
    digest: str


def read_source(path: str | Path) -> SourceImage:
    """Open an image file and prepare it for protection, metadata included.

    Raises:
        BadImageError: See `open_image`, `image_metadata` and `prepare_image`.
    """
    path = Path(path)
    try:
        data = _read_file(path)
    except OSError as error:
        raise BadImageError(f"{path}: cannot read ({error.strerror or error})") from None
    image = _decode(path, data)
    try:
        return prepare_image(image, image_metadata(image, data))
    except BadImageError as error:
        raise BadImageError(f"{path}: {error}") from None


def image_metadata(image: Image.Image, data: bytes) -> dict[str, Any]:
    """The metadata of a decoded image file that the recovered PNG must carry (JSON-able).

    PNG files keep every ancillary chunk verbatim (text, EXIF, ICC, DPI, gamma, ...) with
    its place relative to ``PLTE`` and ``IDAT``. Other formats keep EXIF, ICC profile, DPI,
    comments, XMP and a transparent colour, restored as their PNG equivalents.

    Raises:
        BadImageError: For metadata that the recovered PNG could not carry (so it would be
            lost): naming it, so the user can remove it or convert the file first.
    """
    if image.format == "PNG":
        return _png_metadata(image, data)
    unknown = sorted(set(image.info) - _IGNORED_INFO - _KEPT_INFO)
    if unknown:
        raise BadImageError(
            f"its metadata {unknown} cannot be kept in the recovered PNG; remove it (for example "
            "with exiftool) or convert the file to PNG first"
        )
    if image.format == "TIFF":
        tags = sorted(set(getattr(image, "tag_v2", {})) - _TIFF_STRUCTURE_TAGS)
        if tags:
            raise BadImageError(
                f"TIFF tags {tags} cannot be kept in the recovered PNG; remove them or convert "
                "the file to PNG first"
            )
    comments: list[bytes] = []
    for marker, body in getattr(image, "applist", []):
        if marker == "COM":
            comments.append(body)
        elif not body.startswith(_JPEG_SEGMENTS.get(marker, ())) or body.startswith(
            b"http://ns.adobe.com/xmp/extension/"
        ):
            raise BadImageError(
                f"JPEG segment {marker} ({body[:24]!r}) cannot be kept in the recovered PNG; "
                "remove it or convert the file to PNG first"
            )
    if "comment" in image.info and not comments:
        comment = image.info["comment"]
        comments.append(comment.encode() if isinstance(comment, str) else comment)
    metadata: dict[str, Any] = {}
    for key in ("exif", "icc_profile", "xmp"):
        value = image.info.get(key)
        if value:
            metadata[key] = _b64(value.encode() if isinstance(value, str) else value)
    if "xmp" in metadata:
        try:
            base64.b64decode(metadata["xmp"]).decode("utf-8")
        except UnicodeDecodeError:
            raise BadImageError("its XMP packet is not UTF-8; PNG cannot carry it") from None
    if any(b"\0" in comment for comment in comments):
        raise BadImageError("a comment holds a NUL byte; a PNG text chunk cannot carry it")
    if comments:
        metadata["comments"] = [_b64(comment) for comment in comments]
    dpi = image.info.get("dpi")
    if dpi and (image.format != "TIFF" or 282 in getattr(image, "tag_v2", {})):
        metadata["dpi"] = [float(dpi[0]), float(dpi[1])]
    if "transparency" in image.info and image.mode != "P":
        value = image.info["transparency"]
        metadata["transparency"] = list(value) if isinstance(value, tuple) else value
    return metadata


def _png_metadata(image: Image.Image, data: bytes) -> dict[str, Any]:
    placed: list[list[Any]] = []
    place = 0  # 0: before PLTE, 1: between PLTE and IDAT, 2: after IDAT
    try:
        for kind, body in iter_chunks(data):
            if kind == b"IDAT":
                place = 2
            elif kind == b"PLTE" and image.mode == "P":
                place = 1
            elif kind not in _PNG_FRAME_CHUNKS and not (kind == b"tRNS" and image.mode == "P"):
                placed.append([kind.decode("latin-1"), _b64(body), place])
    except ValueError as error:
        raise BadImageError(str(error)) from None
    return {"png_chunks": placed} if placed else {}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"metadata field {what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"metadata field {what} is not valid base64") from None


def encode_recovered(image: Image.Image, metadata: dict[str, Any]) -> bytes:
    """PNG bytes of a recovered original with the metadata `image_metadata` kept.

    Raises:
        ValueError: If the metadata are malformed (a corrupt record).
    """
    unknown = sorted(set(metadata) - {"png_chunks", "comments", "dpi"} - _KEPT_INFO)
    if unknown:
        raise ValueError(f"unknown metadata fields {unknown}")
    options: dict[str, Any] = {}
    for key in ("exif", "icc_profile"):
        if key in metadata:
            options[key] = _unb64(metadata[key], key)
    if "dpi" in metadata:
        dpi = metadata["dpi"]
        if not (isinstance(dpi, list) and len(dpi) == 2 and all(_positive(v) for v in dpi)):
            raise ValueError("metadata field dpi must be two positive numbers")
        options["dpi"] = tuple(dpi)
    if "transparency" in metadata:
        value = metadata["transparency"]
        options["transparency"] = tuple(value) if isinstance(value, list) else value
    text = PngImagePlugin.PngInfo()
    comments = metadata.get("comments", [])
    if not isinstance(comments, list):
        raise ValueError("metadata field comments must be a list")
    for comment in comments:
        text.add_text("Comment", _unb64(comment, "comments").decode("latin-1"))
    if "xmp" in metadata:
        text.add_itxt("XML:com.adobe.xmp", _unb64(metadata["xmp"], "xmp").decode("utf-8"))
    options["pnginfo"] = text
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG", **options)
    except (TypeError, ValueError, OSError) as error:
        raise ValueError(f"metadata cannot be written: {error}") from None
    placed = metadata.get("png_chunks", [])
    if not placed:
        return buffer.getvalue()
    groups: list[list[bytes]] = [[], [], []]
    if not isinstance(placed, list):
        raise ValueError("metadata field png_chunks must be a list")
    for item in placed:
        if not (isinstance(item, list) and len(item) == 3 and item[2] in (0, 1, 2)):
            raise ValueError("metadata field png_chunks holds a malformed entry")
        kind = item[0].encode("latin-1") if isinstance(item[0], str) else b""
        if len(kind) != 4 or not kind.isalpha():
            raise ValueError(f"metadata names an invalid PNG chunk {item[0]!r:.20}")
        groups[item[2]].append(chunk_bytes(kind, _unb64(item[1], "png_chunks")))
    return insert_chunks(buffer.getvalue(), *(b"".join(group) for group in groups))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e7


def prepare_image(image: Image.Image, metadata: dict[str, Any] | None = None) -> SourceImage:
    """Split a decoded image into RGB pixels to protect and what restores it exactly.

    Args:
        image: The decoded original.
        metadata: What `image_metadata` found in its file, kept in the private data.

    Raises:
        BadImageError: For modes outside `PROTECTABLE_MODES` (16-bit, float, CMYK, ...).
    """
    if image.mode not in PROTECTABLE_MODES:
        raise BadImageError(
            f"mode {image.mode!r} is not supported for protection (16-bit, floating-point and "
            "CMYK images would not come back bit for bit); convert to 8-bit RGB first"
        )
    extra: dict[str, Any] = {"metadata": metadata} if metadata else {}
    alpha = None
    pixels = rgb_pixels(image)
    if image.mode == "P":
        extra["palette"] = image.getpalette()
        if "transparency" in image.info:
            extra["transparency"] = image.info["transparency"]
            if isinstance(extra["transparency"], bytes):
                extra["transparency"] = list(extra["transparency"])
        rebuilt = _quantize_to_palette(pixels, extra["palette"])
        indices = np.asarray(image)
        if rebuilt is None or not np.array_equal(rebuilt, indices):  # duplicate palette colours
            extra["indices"] = _b64(indices.tobytes())
    elif image.mode in ("RGBA", "LA"):
        alpha = np.asarray(image.getchannel("A")).copy()
    rgb = torch.from_numpy(pixels).permute(2, 0, 1)
    return SourceImage(rgb, alpha, image.mode, extra, pixel_digest(image))


_BAND_ROWS = 256
"""Rows converted at a time by `rgb_pixels` and hashed at a time by `pixel_digest`."""


def _bands(image: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    """``(first row, band)`` of `_BAND_ROWS` full rows each, one small copy at a time."""
    for top in range(0, image.height, _BAND_ROWS):
        yield top, image.crop((0, top, image.width, min(image.height, top + _BAND_ROWS)))


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """``image.convert("RGB")`` as a writable ``uint8`` array ``(H, W, 3)``, band by band.

    A whole-image conversion would hold several full-size copies at once (the converted
    image, its bytes, the array); by bands only the result is full-size.
    """
    pixels = np.empty((image.height, image.width, 3), np.uint8)
    for top, band in _bands(image):
        pixels[top : top + band.height] = np.asarray(band.convert("RGB"))
    return pixels


def rebuild_image(
    rgb: Tensor,
    alpha: np.ndarray | None,
    mode: str,
    extra: dict[str, Any],
    approximate: bool = False,
) -> Image.Image:
    """The inverse of `prepare_image`: an image of the original mode from RGB (+ alpha).

    With ``approximate`` (a recovery known not to be exact) pixels that ``mode`` cannot
    hold are brought into it, as close as it allows: to gray (PIL's luma) for gray modes,
    to the nearest palette colour for palette images. Otherwise they are an error, since
    an exact recovery of such a file is always expressible in its mode.

    Raises:
        ValueError: If the pixels cannot be expressed in ``mode`` (and ``approximate`` is
            off) or ``extra`` is malformed.
    """
    pixels = rgb.permute(1, 2, 0).contiguous().numpy()
    if mode in ("RGBA", "LA") and (alpha is None or alpha.shape != pixels.shape[:2]):
        raise ValueError(f"mode {mode} needs an alpha channel of the image's size")
    if mode == "RGB":
        return Image.fromarray(pixels, "RGB")
    if mode == "RGBA":
        return Image.fromarray(np.dstack([pixels, alpha]), "RGBA")
    gray = pixels[..., 0]
    if mode in ("L", "LA", "1"):
        if not (np.array_equal(gray, pixels[..., 1]) and np.array_equal(gray, pixels[..., 2])):
            if not approximate:
                raise ValueError(f"recovered pixels are not gray, cannot rebuild mode {mode}")
            gray = np.asarray(Image.fromarray(pixels, "RGB").convert("L"))
        if mode == "L":
            return Image.fromarray(gray, "L")
        if mode == "LA":
            return Image.fromarray(np.dstack([gray, alpha]), "LA")
        return Image.fromarray(gray, "L").convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        if "indices" in extra:
            raw = _unb64(extra["indices"], "indices")
            if len(raw) != gray.size:
                raise ValueError(f"index map holds {len(raw)} values for {gray.size} pixels")
            indices = np.frombuffer(raw, dtype=np.uint8).reshape(gray.shape)
        else:
            indices = _quantize_to_palette(pixels, extra["palette"])
            if indices is None and approximate:
                indices = _nearest_palette_colours(pixels, extra["palette"])
            if indices is None:
                raise ValueError("recovered colours are not in the palette")
        image = Image.fromarray(indices, "P")
        image.putpalette(extra["palette"])
        if "transparency" in extra:
            value = extra["transparency"]
            image.info["transparency"] = bytes(value) if isinstance(value, list) else value
        return image
    raise ValueError(f"cannot rebuild mode {mode!r}")


def _nearest_palette_colours(pixels: np.ndarray, palette: list[int]) -> np.ndarray:
    """Index of the nearest palette colour (squared RGB distance, first on ties) per pixel."""
    colours = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    unique, inverse = np.unique(pixels.reshape(-1, 3).astype(np.int64), axis=0, return_inverse=True)
    distances = ((unique[:, None, :] - colours[None, :, :]) ** 2).sum(-1)
    nearest = distances.argmin(1).astype(np.uint8)
    return nearest[inverse.reshape(-1)].reshape(pixels.shape[:2])


def _quantize_to_palette(pixels: np.ndarray, palette: list[int]) -> np.ndarray | None:
    """Indices of exact palette colours (first match), or ``None`` if a colour is missing."""
    lookup: dict[tuple[int, int, int], int] = {}
    for index in range(len(palette) // 3 - 1, -1, -1):  # first occurrence wins
        lookup[tuple(palette[3 * index : 3 * index + 3])] = index
    flat = pixels.reshape(-1, 3)
    codes = flat[:, 0].astype(np.int64) << 16 | flat[:, 1].astype(np.int64) << 8 | flat[:, 2]
    table = {r << 16 | g << 8 | b: i for (r, g, b), i in lookup.items()}
    unique, inverse = np.unique(codes, return_inverse=True)
    mapped = [table.get(int(code)) for code in unique]
    if any(m is None for m in mapped):
        return None
    return np.asarray(mapped, dtype=np.uint8)[inverse].reshape(pixels.shape[:2])


def pad_to_multiple(rgb: Tensor, multiple: int) -> Tensor:
    """Edge-replicate ``(3, H, W)`` pixels up to sides divisible by ``multiple``.

    The protectors work on such sides; the padding is cropped off again on recovery
    (the record keeps the original's size).
    """
    height, width = rgb.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not pad_h and not pad_w:
        return rgb
    padded = np.pad(rgb.numpy(), ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")
    return torch.from_numpy(padded)


def rgb_digest(rgb: Tensor) -> str:
    """SHA-256 of ``uint8`` pixels as stored (the record's digest of a protected image)."""
    return hashlib.sha256(rgb.contiguous().numpy().tobytes()).hexdigest()
