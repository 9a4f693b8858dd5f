"""One protected PNG, file by file: open it, check its record, rebuild its original.

These are the per-file steps of every recovery: ``invprotect recover``
(`invprotect.files.recover`) writes what they give, the key holder's data set
(`invprotect.data.protected`) returns it; each decides what a failure means for its run.

`open_protected` reads the file and its sealed record (checked against the key and the
image); `rebuild_original` turns the protector's exact recovery back into the original's
mode, and `matches_record` checks it against the keyed digest in the record;
`approximate_original` makes the best image of a file changed after protection.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from invprotect.files.images import (
    open_image,
    pixel_digest,
    rebuild_image,
    rgb_digest,
    rgb_pixels,
)
from invprotect.files.png import chunks_if_png
from invprotect.record import RECORD_CHUNK, BadRecordError, RecordKeys, RecoveryRecord


@dataclass
class ProtectedFile:
    """A protected file read for recovery.

    Attributes:
        path: The file.
        rgb: ``uint8`` ``(3, H, W)`` pixels as stored (padded as protected, if untouched).
        alpha: ``uint8`` ``(H, W)`` alpha channel as stored, or ``None``.
        record: Its opened recovery record, or ``None`` when it has none (re-encoded).
    """

    path: Path
    rgb: Tensor
    alpha: np.ndarray | None
    record: RecoveryRecord | None

    @cached_property
    def untouched(self) -> bool:
        """True when the file is as protected (its record matches its pixels)."""
        return self.record is not None and rgb_digest(self.rgb) == self.record.protected_sha256


def open_protected(path: Path, keys: RecordKeys, side_multiple: int) -> ProtectedFile:
    """Read a protected file and open its record (checked against the key and the image).

    Args:
        path: The protected PNG (or the file an editor made of it).
        keys: The key's record keys (`Protector.keys`).
        side_multiple: The protector's side multiple: a record must describe an original
            that padded to it gives the image's size.

    Raises:
        BadImageError: If the file cannot be decoded.
        BadRecordError: If its record is malformed, corrupt, sealed under another key, or
            does not fit the image.
    """
    image = open_image(path)
    try:
        chunks = [body for kind, body in chunks_if_png(path.read_bytes()) if kind == RECORD_CHUNK]
    except (OSError, ValueError) as error:
        raise BadRecordError(f"{path}: {error}") from None
    if len(chunks) > 1:
        raise BadRecordError(f"{path}: {len(chunks)} recovery records, expected one")
    record = RecoveryRecord.open(chunks[0], keys, str(path)) if chunks else None
    alpha = np.asarray(image.getchannel("A")).copy() if image.mode in ("RGBA", "LA") else None
    rgb = torch.from_numpy(rgb_pixels(image)).permute(2, 0, 1)
    if record is not None:
        height, width = rgb.shape[-2:]
        fits = all(
            -(-size // side_multiple) * side_multiple == side
            for size, side in ((record.height, height), (record.width, width))
        )
        if not fits:
            raise BadRecordError(
                f"{path}: record fields 'height'/'width' ({record.height}x{record.width}) "
                f"do not fit the image ({height}x{width})"
            )
        if record.mode in ("RGBA", "LA") and alpha is None:
            raise BadRecordError(f"{path}: record of mode {record.mode} but no alpha")
    return ProtectedFile(path, rgb, alpha, record)


def rebuild_original(item: ProtectedFile, restored: Tensor, promised: bool) -> Image.Image:
    """The original's image (its mode, size and alpha) from the protector's recovery.

    Args:
        item: The untouched file (it has a record).
        restored: ``uint8`` ``(3, H, W)`` pixels from `Protector.decode`, padded.
        promised: Whether the protector promised them exact (else rebuilt approximately).

    Raises:
        ValueError: If the pixels cannot be expressed in the original's mode, or the
            record's private data is malformed.
    """
    record = item.record
    assert record is not None
    alpha = item.alpha[: record.height, : record.width] if item.alpha is not None else None
    restored = restored[:, : record.height, : record.width].cpu()
    return rebuild_image(restored, alpha, record.mode, record.extra, approximate=not promised)


def matches_record(image: Image.Image, record: RecoveryRecord, keys: RecordKeys) -> bool:
    """Whether ``image`` is the original whose keyed digest ``record`` holds."""
    return keys.original_mac(pixel_digest(image)) == record.original_mac


def approximate_original(item: ProtectedFile, pixels: Tensor) -> Image.Image:
    """The approximate recovery of a changed file: RGB, or RGBA with its stored alpha.

    Args:
        item: The changed file (with or without a record).
        pixels: ``uint8`` ``(3, H', W')`` from `Protector.approximate` of its padded pixels;
            cropped to the file's size (and the record's, when it has one).
    """
    height, width = item.rgb.shape[-2:]
    if item.record is not None:
        height, width = min(height, item.record.height), min(width, item.record.width)
    out = pixels[:, :height, :width].permute(1, 2, 0).contiguous().cpu().numpy()
    if item.alpha is not None:
        return Image.fromarray(np.dstack([out, item.alpha[:height, :width]]), "RGBA")
    return Image.fromarray(out, "RGB")
