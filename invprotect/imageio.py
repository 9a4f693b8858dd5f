"""Reading image files into tensors, with specific errors for bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

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
