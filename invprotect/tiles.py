"""Large images as tiles, and work in runs bounded by pixels, so memory stays bounded.

A protector's network needs memory in proportion to the pixels it sees at once (about
1 KB per pixel for the CPU RAEG), so a many-megapixel photo would need tens of gigabytes
in one pass. The folder pipeline therefore hands the network a bounded number of pixels
at a time:

- Small images go in runs of at most `PIXEL_BUDGET` pixels (`by_budget`).
- An image with a side over `tile_side` (`needs_tiles`) is protected as a grid of tiles
  (`tile_grid`; the last row and column are narrower). The protected file stays one PNG
  of the image's size; its record holds every tile's bytes one after the other, their
  lengths, the tile side, the context margin and a digest of each protected tile
  (`TileLayout`), so that a file with a few altered tiles recovers the others exactly.

Tiles in context. A network perturbs less near an image's edge, so tiles protected as
images of their own draw a faint line along every tile border (measured in
``benchmarks/bench_sizes.py``). A protector with a fixed-point twin (`RAEG`, see
`invprotect.models.exact`) therefore sees each tile with `CONTEXT` pixels of its
neighbours around it (its window): the tile's protected pixels are the middle of the
twin's output for the window, and its prediction is the middle of the twin's inverse
of the *protected* window, with the tile's own overflow restored. Recovery computes
the same prediction from the protected file, so each tile is still exact from its own
record bytes; a tile altered in the file spoils the prediction of the tiles whose
windows reach into it, which are then recovered approximately too. For an integer
network (`FixedPointUNet.lossless`) protection needs no inverse pass: each tile's part
holds instead how far its window's levels lie from the saved pixels around the tile
(`ExactCodec.code_window`), and the inverse of the window so restored is the original
tile exactly. A window is at most
``(TILE_SIDE + 2 CONTEXT)`` pixels a side. Other protectors (the baselines) keep
independent tiles (margin 0), as do files protected before the margin existed.

Images at most one tile large are not tiled: their files are the same as before tiles
existed, and records without a layout (all older files) recover as one image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from invprotect.files.images import rgb_digest
from invprotect.metrics import ssim
from invprotect.models.exact import WINDOW_CODING, ExactCodec, at_bounds
from invprotect.models.protector import Protector

TILE_SIDE = 512
"""Largest tile side (rounded down to a multiple of the protector's side multiple)."""
PIXEL_BUDGET = TILE_SIDE * TILE_SIDE
"""Pixels per network call: a run of smaller images, or of tiles (one window may exceed it)."""
CONTEXT = 32
"""Pixels of the neighbouring tiles each tile's window holds on every side (where there are
neighbours; rounded up to the protector's side multiple): enough that the tile borders no
longer show (``benchmarks/bench_sizes.py``)."""

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class Tile:
    """One tile of an image: its top-left corner and size, in pixels."""

    top: int
    left: int
    height: int
    width: int

    def of(self, images: Tensor) -> Tensor:
        """The tile's pixels of ``(..., H, W)`` images (a view)."""
        return images[..., self.top : self.top + self.height, self.left : self.left + self.width]

    def grown(self, margin: int, height: int, width: int) -> Tile:
        """This tile with ``margin`` more pixels on every side, within ``height`` x ``width``."""
        top, left = max(0, self.top - margin), max(0, self.left - margin)
        bottom = min(height, self.top + self.height + margin)
        right = min(width, self.left + self.width + margin)
        return Tile(top, left, bottom - top, right - left)

    def within(self, window: Tile) -> Tile:
        """This tile's place inside ``window`` (which holds it)."""
        return Tile(self.top - window.top, self.left - window.left, self.height, self.width)

    def overlaps(self, other: Tile) -> bool:
        """Whether two tiles share a pixel."""
        return (
            self.top < other.top + other.height
            and other.top < self.top + self.height
            and self.left < other.left + other.width
            and other.left < self.left + self.width
        )


@dataclass(frozen=True)
class TileLayout:
    """How a tiled file's record splits into tiles (stored in the record's private part).

    Attributes:
        side: The tile side used when protecting.
        lengths: Record bytes of each tile, in `tile_grid` order.
        digests: SHA-256 (hex) of each protected tile's pixels, in the same order.
        margin: Context around each tile in its window (0: independent tiles).
    """

    side: int
    lengths: list[int]
    digests: list[str]
    margin: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the record (``side``, ``lengths``, ``digests``, ``margin``).

        ``margin`` is left out when it is 0, so independent tiles keep their old bytes.
        """
        data: dict[str, Any] = {"side": self.side, "lengths": self.lengths, "digests": self.digests}
        if self.margin:
            data["margin"] = self.margin
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileLayout:
        """The layout of a record's ``tiles`` field (validated by `invprotect.record`)."""
        return cls(
            data["side"], list(data["lengths"]), list(data["digests"]), data.get("margin", 0)
        )


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
    """Protect one padded ``uint8`` image ``(3, H, W)`` as tiles (in context, where it can).

    Returns:
        ``(protected, layout, record bytes)``: the protected image of the same size,
        the layout, and every tile's record bytes one after the other.

    Raises:
        ValueError: If the protector refuses a tile (such as one too small for a
            baseline's embedded data), or adds a targeted poison (whole images only).
    """
    if protector.poisons:
        raise ValueError(
            f"this {image.shape[-1]}x{image.shape[-2]} image is protected as tiles, and the "
            "targeted poison attacks whole images of its classifiers' size: protect it "
            "without --poison-steps"
        )
    tiles = tile_grid(image.shape[-2], image.shape[-1], side)
    codec = _context_codec(protector)
    margin = -(-CONTEXT // protector.side_multiple) * protector.side_multiple
    if codec is None or not 0 < margin < side:
        (protected, parts), margin = _encode_alone(protector, image, tiles, budget), 0
    else:
        protected, parts = _encode_in_context(codec, image, tiles, margin, budget)
    digests = [rgb_digest(tile.of(protected)) for tile in tiles]
    layout = TileLayout(side, [len(part) for part in parts], digests, margin)
    return protected, layout, b"".join(parts)


def _context_codec(protector: Protector) -> ExactCodec | None:
    """The codec that protects tiles in context, for a protector with a fixed-point twin."""
    if not isinstance(protector, nn.Module):
        return None
    codec = ExactCodec(protector)
    return codec if codec.twin is not None else None


def _encode_alone(
    protector: Protector, image: Tensor, tiles: list[Tile], budget: int
) -> tuple[Tensor, list[bytes]]:
    """Each tile protected as an image of its own (`Protector.encode`)."""
    protected = torch.empty_like(image)
    parts: list[bytes] = [b""] * len(tiles)
    for run in _runs(tiles, budget):
        out, records = protector.encode(torch.stack([tiles[i].of(image) for i in run]))
        for index, tile_out, record in zip(run, out, records, strict=True):
            tiles[index].of(protected).copy_(tile_out)
            parts[index] = record
    return protected, parts


def _windows(tiles: list[Tile], margin: int, height: int, width: int) -> list[Tile]:
    """Each tile's window: the tile and ``margin`` pixels around it, within the image."""
    return [tile.grown(margin, height, width) for tile in tiles]


def _context_runs(tiles: list[Tile], windows: list[Tile], budget: int) -> Iterator[list[int]]:
    """Tiles in runs of one window shape and place in it, at most ``budget`` window pixels."""
    shapes: dict[tuple[int, ...], list[int]] = {}
    for index, (tile, window) in enumerate(zip(tiles, windows, strict=True)):
        inner = tile.within(window)
        key = (window.height, window.width, inner.top, inner.left, inner.height, inner.width)
        shapes.setdefault(key, []).append(index)
    for indices in shapes.values():
        yield from by_budget(indices, lambda i: windows[i].height * windows[i].width, budget)


def _ring(tile: Tile, window: Tile) -> Tensor:
    """Where a window lies outside its tile: a boolean ``(height, width)`` mask."""
    mask = torch.ones(window.height, window.width, dtype=torch.bool)
    tile.within(window).of(mask).fill_(False)
    return mask


def _encode_in_context(
    codec: ExactCodec, image: Tensor, tiles: list[Tile], margin: int, budget: int
) -> tuple[Tensor, list[bytes]]:
    """Tiles protected and coded in their windows (see the module docstring)."""
    windows = _windows(tiles, margin, image.shape[-2], image.shape[-1])
    protected = torch.empty_like(image)
    overflows: list[Tensor] = [torch.empty(0)] * len(tiles)  # at the values saved as 0 or 255
    rings: list[Tensor] = [torch.empty(0)] * len(tiles)  # a window's levels outside its tile
    lossless = True
    for run in _context_runs(tiles, windows, budget):
        levels, exact = codec.lossless_levels(torch.stack([windows[i].of(image) for i in run]))
        lossless = lossless and exact
        for index, window_levels in zip(run, levels, strict=True):
            inner = tiles[index].within(windows[index]).of(window_levels)
            saved = inner.clamp(0, 255).to(torch.uint8)
            tiles[index].of(protected).copy_(saved)
            overflows[index] = (inner - saved.float())[at_bounds(saved)]
            rings[index] = window_levels[:, _ring(tiles[index], windows[index])].to(torch.int32)
    if lossless:  # one pass: each part holds what its window's inverse needs (coding 2)
        return protected, [
            codec.code_window(
                tile.of(protected),
                overflows[index],
                window.of(protected)[:, _ring(tile, window)],
                rings[index],
            )
            for index, (tile, window) in enumerate(zip(tiles, windows, strict=True))
        ]
    parts: list[bytes] = [b""] * len(tiles)
    for run in _context_runs(tiles, windows, budget):
        levels = []
        for index in run:
            saved = tiles[index].of(protected)
            level = saved.float()
            level[at_bounds(saved)] += overflows[index]
            levels.append(level)
        values = _predictions(codec, protected, tiles, windows, run, levels)
        records = codec.code(
            torch.stack([tiles[i].of(image) for i in run]),
            torch.stack([tiles[i].of(protected) for i in run]),
            torch.stack(levels),
            values,
        )
        for index, record in zip(run, records, strict=True):
            parts[index] = record
    return protected, parts


def _predictions(
    codec: ExactCodec,
    protected: Tensor,
    tiles: list[Tile],
    windows: list[Tile],
    run: list[int],
    levels: list[Tensor],
) -> Tensor:
    """The prediction of each tile of ``run``: the middle of the inverse of its window.

    The window holds the saved protected pixels, with the tile's own levels (its
    overflow restored) in the middle.
    """
    inputs = torch.stack([windows[i].of(protected).float() for i in run])
    for position, index in enumerate(run):
        tiles[index].within(windows[index]).of(inputs[position]).copy_(levels[position])
    values = codec.prediction(inputs)
    return torch.stack(
        [tiles[i].within(windows[i]).of(value) for i, value in zip(run, values, strict=True)]
    )


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
    `Protector.approximate` (their record bytes no longer apply), and so are the tiles
    whose windows reach into them (with a margin).

    Returns:
        ``(restored, exact, altered)``: the recovered image, whether every tile is
        promised bit for bit, and the altered tiles.

    Raises:
        ValueError: If the layout does not fit the image or the protector (a corrupt
            record), or a tile's record bytes do not fit it.
    """
    height, width = protected.shape[-2:]
    for name, value in (("side", layout.side), ("context margin", layout.margin)):
        if value % protector.side_multiple:
            raise ValueError(
                f"record tile {name} {value} is not a multiple of the protector's side "
                f"multiple {protector.side_multiple}"
            )
    tiles = tile_grid(height, width, layout.side)
    if len(tiles) != len(layout.lengths) or len(tiles) != len(layout.digests):
        raise ValueError(
            f"record holds {len(layout.lengths)} tiles, a {height}x{width} image in tiles of "
            f"{layout.side} has {len(tiles)}"
        )
    codec = _context_codec(protector) if layout.margin else None
    if layout.margin and codec is None:
        raise ValueError(
            "record tiles were protected in context, which needs a protector with a "
            "fixed-point network (a RAEG)"
        )
    parts = split_residual(data, layout.lengths)
    altered = [
        rgb_digest(tile.of(protected)) != digest
        for tile, digest in zip(tiles, layout.digests, strict=True)
    ]
    windows = _windows(tiles, layout.margin, height, width)
    spoilt = [
        any(a and window.overlaps(other) for other, a in zip(tiles, altered, strict=True))
        for window in windows
    ]
    restored = torch.empty_like(protected)
    exact = True
    if codec is None:
        exact = _decode_alone(protector, protected, tiles, parts, spoilt, restored, budget)
    else:
        _decode_in_context(codec, protected, tiles, windows, parts, spoilt, restored, budget)
    changed = [tile for tile, s in zip(tiles, spoilt, strict=True) if s]
    for run in _runs(changed, budget):
        batch = torch.stack([changed[i].of(protected) for i in run])
        for index, tile_out in zip(run, protector.approximate(batch), strict=True):
            changed[index].of(restored).copy_(tile_out)
    return (
        restored,
        exact and not changed,
        [t for t, a in zip(tiles, altered, strict=True) if a],
    )


def _decode_alone(
    protector: Protector,
    protected: Tensor,
    tiles: list[Tile],
    parts: list[bytes],
    spoilt: list[bool],
    restored: Tensor,
    budget: int,
) -> bool:
    """Recover the unspoilt independent tiles into ``restored``; whether all are promised."""
    kept = [i for i, s in enumerate(spoilt) if not s]
    exact = True
    for run in _runs([tiles[i] for i in kept], budget):
        indices = [kept[i] for i in run]
        batch = torch.stack([tiles[i].of(protected) for i in indices])
        out, promised = protector.decode(batch, [parts[i] for i in indices])
        for index, tile_out in zip(indices, out, strict=True):
            tiles[index].of(restored).copy_(tile_out)
        exact = exact and all(promised)
    return exact


def _decode_in_context(
    codec: ExactCodec,
    protected: Tensor,
    tiles: list[Tile],
    windows: list[Tile],
    parts: list[bytes],
    spoilt: list[bool],
    restored: Tensor,
    budget: int,
) -> None:
    """Recover the unspoilt tiles protected in context into ``restored``, bit for bit."""
    kept = [i for i, s in enumerate(spoilt) if not s]
    whole = [i for i in kept if parts[i][:1] == bytes([WINDOW_CODING])]
    for run in _context_runs([tiles[i] for i in whole], [windows[i] for i in whole], budget):
        indices = [whole[i] for i in run]
        inputs = []
        for index in indices:
            tile, window = tiles[index], windows[index]
            ring = _ring(tile, window)
            levels, difference = codec.unpack_window(
                tile.of(protected), parts[index], 3 * int(ring.sum())
            )
            values = window.of(protected).float()
            values[:, ring] += difference.view(3, -1).float()
            tile.within(window).of(values).copy_(levels)
            inputs.append(values)
        outputs = codec.prediction(torch.stack(inputs))
        for index, value in zip(indices, outputs, strict=True):
            middle = tiles[index].within(windows[index]).of(value).round()
            if middle.min() < 0 or middle.max() > 255:
                raise ValueError("tile record is corrupt (it restores values outside 0..255)")
            tiles[index].of(restored).copy_(middle.to(torch.uint8))
    coded_by_window = set(whole)
    kept = [i for i in kept if i not in coded_by_window]
    for run in _context_runs([tiles[i] for i in kept], [windows[i] for i in kept], budget):
        indices = [kept[i] for i in run]
        saved = torch.stack([tiles[i].of(protected) for i in indices])
        levels, rests = codec.unpack(saved, [parts[i] for i in indices])
        values = _predictions(codec, protected, tiles, windows, indices, list(levels))
        for index, tile_out in zip(indices, codec.combine(values, rests), strict=True):
            tiles[index].of(restored).copy_(tile_out)


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
