"""Large images as independent tiles, and work in runs bounded by pixels, so memory stays bounded.

A protector's network needs memory in proportion to the pixels it sees at once (about
1 KB per pixel for the CPU RAEG, float64 recovery included), so a many-megapixel photo
would need tens of gigabytes in one pass. The folder pipeline therefore never hands the
network more than `PIXEL_BUDGET` pixels at a time:

- Small images go in runs of at most `PIXEL_BUDGET` pixels (`by_budget`).
- An image with a side over `tile_side` (`needs_tiles`) is protected as a grid of
  independent tiles (`tile_grid`; the last row and column are narrower): each tile is
  an image of its own for `Protector.encode` and `Protector.decode`, so each is
  recovered bit for bit from its own record bytes. The protected file stays one PNG of
  the image's size; its record holds every tile's bytes one after the other
  (`pack_residuals`), their lengths, the tile side and a digest of each protected tile
  (`TileLayout`), so that a file with a few altered tiles recovers the others exactly.

Images at most one tile large are not tiled: their files are the same as before tiles
existed, and records without a layout (all older files) recover as one image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from invprotect.files.images import rgb_digest
from invprotect.metrics import ssim
from invprotect.models.protector import Protector

TILE_SIDE = 512
"""Largest tile side (rounded down to a multiple of the protector's side multiple)."""
PIXEL_BUDGET = TILE_SIDE * TILE_SIDE
"""Most pixels the network sees in one call (one full tile, or a run of smaller images)."""

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class Tile:
    """One tile of an image: its top-left corner and size, in pixels."""

    top: int
    left: int
    height: int
    width: int

    def of(self, images: Tensor) -> Tensor:
        """The tile's window of ``(..., H, W)`` images (a view)."""
        return images[..., self.top : self.top + self.height, self.left : self.left + self.width]


@dataclass(frozen=True)
class TileLayout:
    """How a tiled file's record splits into tiles (stored in the record's private part).

    Attributes:
        side: The tile side used when protecting.
        lengths: Record bytes of each tile, in `tile_grid` order.
        digests: SHA-256 (hex) of each protected tile's pixels, in the same order.
    """

    side: int
    lengths: list[int]
    digests: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the record (``side``, ``lengths``, ``digests``)."""
        return {"side": self.side, "lengths": self.lengths, "digests": self.digests}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileLayout:
        """The layout of a record's ``tiles`` field (validated by `invprotect.record`)."""
        return cls(data["side"], list(data["lengths"]), list(data["digests"]))


def tile_side(side_multiple: int) -> int:
    """`TILE_SIDE` rounded down to a multiple of a protector's ``side_multiple``."""
    return max(side_multiple, TILE_SIDE - TILE_SIDE % side_multiple)


def needs_tiles(height: int, width: int, side: int) -> bool:
    """Whether an image of this (padded) size is protected as tiles of ``side``."""
    return height > side or width > side


def tile_count(height: int, width: int, side: int) -> int:
    """How many tiles `tile_grid` gives (the same for the original or the padded size)."""
    return -(-height // side) * -(-width // side)


def tile_grid(height: int, width: int, side: int) -> list[Tile]:
    """Tiles of ``side`` covering an image row by row; the last row and column are smaller.

    Raises:
        ValueError: If ``side`` is not positive.

    Example:
        >>> tiles = tile_grid(600, 1100, 512)
        >>> len(tiles), tiles[-1]
        (6, Tile(top=512, left=1024, height=88, width=76))
    """
    if side <= 0:
        raise ValueError(f"the tile side must be positive, got {side}")
    return [
        Tile(top, left, min(side, height - top), min(side, width - left))
        for top in range(0, height, side)
        for left in range(0, width, side)
    ]


def by_budget(
    items: list[_Item],
    pixels: Callable[[_Item], int],
    budget: int = PIXEL_BUDGET,
    limit: int | None = None,
) -> Iterator[list[_Item]]:
    """Consecutive runs of ``items`` of at most ``budget`` pixels and ``limit`` items each.

    An item larger than the budget makes a run of its own.
    """
    run: list[_Item] = []
    held = 0
    for item in items:
        size = pixels(item)
        if run and (held + size > budget or (limit is not None and len(run) >= limit)):
            yield run
            run, held = [], 0
        run.append(item)
        held += size
    if run:
        yield run


def _runs(tiles: list[Tile], budget: int) -> Iterator[list[int]]:
    """Indices of tiles of one size in runs of at most ``budget`` pixels, in grid order."""
    shapes: dict[tuple[int, int], list[int]] = {}
    for index, tile in enumerate(tiles):
        shapes.setdefault((tile.height, tile.width), []).append(index)
    for indices in shapes.values():
        yield from by_budget(indices, lambda i: tiles[i].height * tiles[i].width, budget)


def encode_tiles(
    protector: Protector, image: Tensor, side: int, budget: int = PIXEL_BUDGET
) -> tuple[Tensor, TileLayout, bytes]:
    """Protect one padded ``uint8`` image ``(3, H, W)`` as independent tiles.

    Returns:
        ``(protected, layout, record bytes)``: the protected image of the same size,
        the layout, and every tile's record bytes one after the other.

    Raises:
        ValueError: If the protector refuses a tile (such as one too small for a
            baseline's embedded data).
    """
    tiles = tile_grid(image.shape[-2], image.shape[-1], side)
    protected = torch.empty_like(image)
    parts: list[bytes] = [b""] * len(tiles)
    for run in _runs(tiles, budget):
        out, records = protector.encode(torch.stack([tiles[i].of(image) for i in run]))
        for index, tile_out, record in zip(run, out, records, strict=True):
            tiles[index].of(protected).copy_(tile_out)
            parts[index] = record
    digests = [rgb_digest(tile.of(protected)) for tile in tiles]
    layout = TileLayout(side, [len(part) for part in parts], digests)
    return protected, layout, b"".join(parts)


def split_residual(data: bytes, lengths: list[int]) -> list[bytes]:
    """A tiled record's bytes cut into each tile's.

    Raises:
        ValueError: If the lengths do not add up to the bytes held (a corrupt record).
    """
    if sum(lengths) != len(data):
        raise ValueError(
            f"tile record lengths add up to {sum(lengths)} bytes, record holds {len(data)}"
        )
    parts, start = [], 0
    for length in lengths:
        parts.append(data[start : start + length])
        start += length
    return parts


def decode_tiles(
    protector: Protector,
    protected: Tensor,
    data: bytes,
    layout: TileLayout,
    budget: int = PIXEL_BUDGET,
) -> tuple[Tensor, bool, list[Tile]]:
    """Recover a tiled protected image ``(3, H, W)``: untouched tiles exactly, others approximately.

    Tiles whose pixels no longer match their recorded digest are recovered with
    `Protector.approximate` (their record bytes no longer apply).

    Returns:
        ``(restored, exact, altered)``: the recovered image, whether every tile is
        promised bit for bit, and the altered tiles.

    Raises:
        ValueError: If the layout does not fit the image or the protector (a corrupt
            record), or a tile's record bytes do not fit it.
    """
    height, width = protected.shape[-2:]
    if layout.side % protector.side_multiple:
        raise ValueError(
            f"record tile side {layout.side} is not a multiple of the protector's side "
            f"multiple {protector.side_multiple}"
        )
    tiles = tile_grid(height, width, layout.side)
    if len(tiles) != len(layout.lengths) or len(tiles) != len(layout.digests):
        raise ValueError(
            f"record holds {len(layout.lengths)} tiles, a {height}x{width} image in tiles of "
            f"{layout.side} has {len(tiles)}"
        )
    parts = split_residual(data, layout.lengths)
    altered = [
        rgb_digest(tile.of(protected)) != digest
        for tile, digest in zip(tiles, layout.digests, strict=True)
    ]
    restored = torch.empty_like(protected)
    exact = True
    for run in _runs(tiles, budget):
        batch = torch.stack([tiles[i].of(protected) for i in run])
        kept = [position for position, i in enumerate(run) if not altered[i]]
        if kept:
            out, promised = protector.decode(batch[kept], [parts[run[p]] for p in kept])
            for position, tile_out in zip(kept, out, strict=True):
                tiles[run[position]].of(restored).copy_(tile_out)
            exact = exact and all(promised)
        changed = [position for position, i in enumerate(run) if altered[i]]
        if changed:
            for position, tile_out in zip(
                changed, protector.approximate(batch[changed]), strict=True
            ):
                tiles[run[position]].of(restored).copy_(tile_out)
    return (
        restored,
        exact and not any(altered),
        [t for t, a in zip(tiles, altered, strict=True) if a],
    )


def approximate_tiles(
    protector: Protector, protected: Tensor, side: int, budget: int = PIXEL_BUDGET
) -> Tensor:
    """`Protector.approximate` of one large ``uint8`` image ``(3, H, W)``, tile by tile."""
    tiles = tile_grid(protected.shape[-2], protected.shape[-1], side)
    restored = torch.empty_like(protected)
    for run in _runs(tiles, budget):
        out = protector.approximate(torch.stack([tiles[i].of(protected) for i in run]))
        for index, tile_out in zip(run, out, strict=True):
            tiles[index].of(restored).copy_(tile_out)
    return restored


def tiled_quality(protected: Tensor, original: Tensor, side: int) -> tuple[float, float]:
    """PSNR (dB, capped at 100) and SSIM of a large ``uint8`` image pair ``(3, H, W)``, by tiles.

    The PSNR is the whole image's (squared errors summed over tiles); the SSIM is the
    pixel-weighted mean of the tiles' SSIM (windows do not cross tile borders).
    """
    squared, weighted = 0.0, 0.0
    for tile in tile_grid(original.shape[-2], original.shape[-1], side):
        a = tile.of(protected)[None].float() / 255
        b = tile.of(original)[None].float() / 255
        squared += (a - b).square().sum().item()
        weighted += ssim(a, b).item() * tile.height * tile.width
    pixels = original.shape[-2] * original.shape[-1]
    mse = max(squared / (3 * pixels), 1e-10)
    return 10.0 * torch.log10(torch.tensor(1.0 / mse)).item(), weighted / pixels
