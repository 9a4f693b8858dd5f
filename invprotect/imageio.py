"""Reading image files into tensors, with specific errors for bad files."""

from __future__ import annotations

import base64
import hashlib
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
"""File suffixes (lower case) treated as images when scanning folders."""

EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
"""PIL modes with 8 bits (or fewer) per channel, which convert to RGB without loss of range."""


class BadImageError(ValueError):
    """An image file cannot be used: empty, truncated, not an image, or an unsupported mode."""


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file.

    Raises:
        BadImageError: With a specific reason (empty file, truncated data, not an
            image, unsupported mode such as 16-bit or floating point).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as error:
        raise BadImageError(f"{path}: cannot decode ({error})") from None
    if image.mode not in EIGHT_BIT_MODES:
        raise BadImageError(
            f"{path}: unsupported mode {image.mode!r} (16-bit or floating-point); "
            "convert it to 8-bit RGB first"
        )
    return image


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


def pixel_digest(image: Image.Image) -> str:
    """SHA-256 of an image's mode, size, pixels and palette: equal digests mean equal images."""
    digest = hashlib.sha256(f"{image.mode}|{image.width}x{image.height}|".encode())
    digest.update(image.tobytes())
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
        extra: Mode-specific data for `rebuild_image` (palette, transparency, indices).
        digest: `pixel_digest` of the original.
    """

    rgb: Tensor
    alpha: np.ndarray | None
    mode: str
    extra: dict[str, Any]
    digest: str


def prepare_image(image: Image.Image) -> SourceImage:
    """Split a decoded image into RGB pixels to protect and what restores its mode exactly.

    Raises:
        BadImageError: For modes outside `PROTECTABLE_MODES` (16-bit, float, CMYK, ...).
    """
    if image.mode not in PROTECTABLE_MODES:
        raise BadImageError(
            f"mode {image.mode!r} is not supported for protection (16-bit, floating-point and "
            "CMYK images would not come back bit for bit); convert to 8-bit RGB first"
        )
    extra: dict[str, Any] = {}
    alpha = None
    if image.mode == "P":
        extra["palette"] = image.getpalette()
        if "transparency" in image.info:
            extra["transparency"] = image.info["transparency"]
            if isinstance(extra["transparency"], bytes):
                extra["transparency"] = list(extra["transparency"])
        rgb_image = image.convert("RGB")
        rebuilt = _quantize_to_palette(np.asarray(rgb_image), extra["palette"])
        indices = np.asarray(image)
        if rebuilt is None or not np.array_equal(rebuilt, indices):  # duplicate palette colours
            extra["indices"] = base64.b64encode(zlib.compress(indices.tobytes(), 9)).decode()
    elif image.mode in ("RGBA", "LA"):
        alpha = np.asarray(image.getchannel("A")).copy()
        rgb_image = image.convert("RGB")
    else:
        rgb_image = image.convert("RGB")
    rgb = torch.from_numpy(np.asarray(rgb_image, dtype=np.uint8).copy()).permute(2, 0, 1)
    return SourceImage(rgb, alpha, image.mode, extra, pixel_digest(image))


def rebuild_image(
    rgb: Tensor, alpha: np.ndarray | None, mode: str, extra: dict[str, Any]
) -> Image.Image:
    """The inverse of `prepare_image`: an image of the original mode from RGB (+ alpha).

    Raises:
        ValueError: If the pixels cannot be expressed in ``mode`` (not an unaltered recovery).
    """
    pixels = rgb.permute(1, 2, 0).contiguous().numpy()
    if mode == "RGB":
        return Image.fromarray(pixels, "RGB")
    if mode == "RGBA":
        return Image.fromarray(np.dstack([pixels, alpha]), "RGBA")
    gray = pixels[..., 0]
    if mode in ("L", "LA", "1"):
        if not (np.array_equal(gray, pixels[..., 1]) and np.array_equal(gray, pixels[..., 2])):
            raise ValueError(f"recovered pixels are not gray, cannot rebuild mode {mode}")
        if mode == "L":
            return Image.fromarray(gray, "L")
        if mode == "LA":
            return Image.fromarray(np.dstack([gray, alpha]), "LA")
        return Image.fromarray(gray, "L").convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        if "indices" in extra:
            raw = zlib.decompress(base64.b64decode(extra["indices"]))
            indices = np.frombuffer(raw, dtype=np.uint8).reshape(gray.shape)
        else:
            indices = _quantize_to_palette(pixels, extra["palette"])
            if indices is None:
                raise ValueError("recovered colours are not in the palette")
        image = Image.fromarray(indices, "P")
        image.putpalette(extra["palette"])
        if "transparency" in extra:
            value = extra["transparency"]
            image.info["transparency"] = bytes(value) if isinstance(value, list) else value
        return image
    raise ValueError(f"cannot rebuild mode {mode!r}")


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
