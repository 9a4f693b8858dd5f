"""Large images as tiles: the grid, runs by pixel budget, tiled files bit-exact through the folder
pipeline, tiles in context protected as the whole image would be (no seams), one altered tile
detected (the tiles out of its reach recovered exactly), untiled files and independent tiles of
before still recovered, small images untiled, and tile layouts in records validated.

Tiles are made small here (``TILE_SIDE`` patched to 64) so that a 200 px image has several.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import invprotect.tiles
from invprotect.files.images import pixel_digest, read_source
from invprotect.files.png import encode_png, read_chunks
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.metrics import psnr, ssim
from invprotect.models.exact import CODING, WINDOW_CODING, ExactCodec
from invprotect.models.raeg import RAEG
from invprotect.record import RECORD_CHUNK, BadRecordError, RecordKeys, RecoveryRecord
from invprotect.tiles import (
    CONTEXT,
    Tile,
    TileLayout,
    by_budget,
    decode_tiles,
    encode_tiles,
    tile_count,
    tile_grid,
    tile_side,
    tiled_quality,
)
from tests.contracts import tiny_raeg


@pytest.fixture(scope="module", params=["affine", "integer"])
def raeg(request: pytest.FixtureRequest) -> RAEG:
    """A DSAC protector (tiles coded by residuals) and an integer one (by their windows)."""
    return tiny_raeg(0, request.param)


@pytest.fixture
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(invprotect.tiles, "TILE_SIDE", 64)
    return 64


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus seeded noise, ``uint8`` ``(H, W, 3)``."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    smooth = np.stack([30 + 200 * x / width, 40 + 180 * y / height, 60 + 60 * np.sin(x / 9)], -1)
    noise = np.random.default_rng(seed).normal(0, 6, smooth.shape)
    return (smooth + noise).clip(0, 255).astype(np.uint8)


def _tree(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    Image.fromarray(_photo(138, 200)).save(src / "wide.png")  # padded to 140x200: tiled
    rgba = np.dstack([_photo(130, 90, 1), np.full((130, 90), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src / "alpha.png")  # tiled, alpha kept
    Image.fromarray(_photo(48, 48, 2)).save(src / "small.png")  # one tile: not tiled
    return src


def _record(path: Path, raeg: RAEG) -> RecoveryRecord:
    return RecoveryRecord.open(read_chunks(path.read_bytes())[RECORD_CHUNK], raeg.keys)


def _digest(path: Path) -> str:
    with Image.open(path) as image:
        return pixel_digest(image)


def test_tile_grid_covers_every_pixel_once() -> None:
    tiles = tile_grid(150, 200, 64)
    covered = np.zeros((150, 200), int)
    for tile in tiles:
        covered[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width] += 1
    assert (covered == 1).all()
    assert len(tiles) == tile_count(150, 200, 64) == 3 * 4
    assert tiles[-1] == Tile(128, 192, 22, 8)
    assert tile_side(8) == 512 and tile_side(24) == 504 and tile_side(1000) == 1000
    with pytest.raises(ValueError, match="positive"):
        tile_grid(10, 10, 0)


def test_runs_hold_at_most_the_budget_and_the_limit() -> None:
    runs = list(by_budget([10, 10, 30, 5, 5, 5, 25], lambda n: n, budget=20, limit=2))
    assert runs == [[10, 10], [30], [5, 5], [5], [25]]


def test_tiled_files_round_trip_bit_exactly(raeg: RAEG, small_tiles: int, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    report = protect_tree(src, tmp_path / "prt", raeg)
    assert report.ok and report.written == 3
    wide = _record(tmp_path / "prt" / "wide.png", raeg)
    assert wide.extra["tiles"]["side"] == small_tiles
    assert len(wide.extra["tiles"]["lengths"]) == tile_count(138, 200, small_tiles) == 12
    with Image.open(tmp_path / "prt" / "wide.png") as protected:
        assert protected.size == (200, 140)  # one PNG of the padded full size
    assert "tiles" in _record(tmp_path / "prt" / "alpha.png", raeg).extra
    assert "tiles" not in _record(tmp_path / "prt" / "small.png", raeg).extra

    back = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert back.ok and back.written == 3 and not back.altered and not back.approximate
    for name in ("wide.png", "alpha.png", "small.png"):
        assert _digest(tmp_path / "rec" / name) == _digest(src / name), name


def test_one_altered_tile_is_detected_and_the_tiles_out_of_its_reach_recover_exactly(
    raeg: RAEG, small_tiles: int, tmp_path: Path
) -> None:
    src = _tree(tmp_path)
    assert protect_tree(src, tmp_path / "prt", raeg).ok
    path = tmp_path / "prt" / "wide.png"
    assert _record(path, raeg).extra["tiles"]["margin"] == CONTEXT
    chunks = read_chunks(path.read_bytes())
    with Image.open(path) as image:
        pixels = np.asarray(image).copy()
    pixels[10:30, 10:40] ^= 0x20  # inside the tile at (0, 0) only
    path.write_bytes(encode_png(pixels, chunks))  # the record is kept, the pixels changed

    report = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert report.altered == ["wide.png"]
    assert report.mismatched == ["wide.png"]  # the manifest says it is not the original
    assert any("1 of 12 tiles" in w and "(0, 0)" in w for w in report.warnings)
    with Image.open(src / "wide.png") as image:
        original = np.asarray(image)
    with Image.open(tmp_path / "rec" / "wide.png") as image:
        recovered = np.asarray(image)
    # the windows of the tiles at (0, 64), (64, 0) and (64, 64) reach into the altered tile
    outside = np.ones(original.shape[:2], bool)
    outside[:128, :128] = False
    assert np.array_equal(recovered[outside], original[outside])
    assert not np.array_equal(recovered[:64, :64], original[:64, :64])


def test_tiles_in_context_are_protected_as_the_whole_image_is(
    raeg: RAEG, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seams: each tile sees its neighbours, so its borders get the whole image's perturbation."""
    image = torch.from_numpy(_photo(128, 192)).permute(2, 0, 1).contiguous()
    whole = raeg.encode(image[None])[0][0].float()
    border = torch.zeros(128, 192, dtype=torch.bool)
    border[:, 60:68] = border[:, 124:132] = border[60:68, :] = True
    in_context, layout, data = encode_tiles(raeg, image, 64)
    restored, exact, altered = decode_tiles(raeg, in_context, data, layout)
    assert layout.margin == CONTEXT and exact and not altered and torch.equal(restored, image)
    monkeypatch.setattr(invprotect.tiles, "CONTEXT", 0)  # independent tiles, as before
    alone, alone_layout, _ = encode_tiles(raeg, image, 64)
    assert alone_layout.margin == 0 and "margin" not in alone_layout.to_dict()
    off_in_context = (in_context.float() - whole).abs()[:, border].mean().item()
    off_alone = (alone.float() - whole).abs()[:, border].mean().item()
    assert off_in_context < off_alone / 10, (off_in_context, off_alone)


def test_an_integer_network_codes_tiles_by_their_windows_in_one_pass(
    raeg: RAEG, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No inverse pass while protecting; each part holds the tile's window (coding 2)."""
    image = torch.from_numpy(_photo(128, 192, 3)).permute(2, 0, 1).contiguous()
    twin = ExactCodec(raeg).twin
    assert twin is not None
    with monkeypatch.context() as patch:
        if twin.lossless:
            patch.setattr(twin, "inverse", lambda _: pytest.fail("protection ran the inverse"))
        protected, layout, data = encode_tiles(raeg, image, 64)
    parts = invprotect.tiles.split_residual(data, layout.lengths)
    assert {part[0] for part in parts} == {WINDOW_CODING if twin.lossless else CODING}
    assert (protected.float() - image.float()).abs().mean() > 2.0
    restored, exact, altered = decode_tiles(raeg, protected, data, layout)
    assert exact and not altered and torch.equal(restored, image)
    if twin.lossless:  # a part belongs to its own tile's window: another's is refused
        swapped = TileLayout(layout.side, layout.lengths[::-1], layout.digests, layout.margin)
        with pytest.raises(ValueError):
            decode_tiles(raeg, protected, b"".join(parts[::-1]), swapped)


def test_files_tiled_before_the_context_margin_still_recover(
    raeg: RAEG, small_tiles: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    src = _tree(tmp_path)
    monkeypatch.setattr(invprotect.tiles, "CONTEXT", 0)  # independent tiles, as before
    assert protect_tree(src, tmp_path / "prt", raeg).ok
    assert "margin" not in _record(tmp_path / "prt" / "wide.png", raeg).extra["tiles"]
    monkeypatch.setattr(invprotect.tiles, "CONTEXT", 32)
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert back.ok and back.written == 3 and not back.altered
    for name in ("wide.png", "alpha.png"):
        assert _digest(tmp_path / "rec" / name) == _digest(src / name), name


def test_a_large_file_without_its_record_is_recovered_tile_by_tile(
    raeg: RAEG, small_tiles: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path)
    assert protect_tree(src, tmp_path / "prt", raeg).ok
    path = tmp_path / "prt" / "wide.png"
    with Image.open(path) as image:
        image.load()
        image.save(path)  # re-encoded: the record chunk is dropped
    shapes: list[tuple[int, ...]] = []
    original = raeg.approximate

    def recording(protected: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(protected.shape[-2:]))
        return original(protected)

    monkeypatch.setattr(raeg, "approximate", recording)
    report = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert report.altered == ["wide.png"]
    assert max(max(shape) for shape in shapes) <= small_tiles  # never the whole image at once
    with Image.open(src / "wide.png") as image:
        before = np.asarray(image).astype(float)
    with Image.open(tmp_path / "rec" / "wide.png") as image:
        after = np.asarray(image).astype(float)[:138]  # no record: the padded size comes back
    assert 10 * np.log10(255**2 / np.mean((before - after) ** 2)) > 30


def test_untiled_files_protected_before_tiles_still_recover(
    raeg: RAEG, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    src = _tree(tmp_path)
    monkeypatch.setattr(invprotect.tiles, "TILE_SIDE", 4096)  # nothing tiled, as before tiles
    assert protect_tree(src, tmp_path / "prt", raeg).ok
    assert "tiles" not in _record(tmp_path / "prt" / "wide.png", raeg).extra
    monkeypatch.setattr(invprotect.tiles, "TILE_SIDE", 64)
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", raeg)
    assert back.ok and back.written == 3 and not back.altered
    for name in ("wide.png", "alpha.png", "small.png"):
        assert _digest(tmp_path / "rec" / name) == _digest(src / name), name


def test_small_images_are_protected_as_one_image_like_before(raeg: RAEG, tmp_path: Path) -> None:
    """A file no larger than a tile: the bytes of the untiled recipe, record without a layout."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_photo(96, 120)).save(src / "a.png")
    assert protect_tree(src, tmp_path / "prt", raeg).ok
    source = read_source(src / "a.png")
    protected, residuals = raeg.encode(source.rgb[None])
    keys = raeg.keys
    record = RecoveryRecord(
        source.mode,
        96,
        120,
        keys.original_mac(source.digest),
        hashlib.sha256(protected[0].contiguous().numpy().tobytes()).hexdigest(),
        keys.key_id,
        residuals[0],
        source.extra,
    )
    expected = encode_png(protected[0].permute(1, 2, 0).numpy(), {RECORD_CHUNK: record.seal(keys)})
    assert (tmp_path / "prt" / "a.png").read_bytes() == expected


def test_runs_by_pixels_split_large_batches(raeg: RAEG, tmp_path: Path) -> None:
    """Six 300x300 files (90,000 pixels each) go to the network two at a time, not six."""
    src = tmp_path / "src"
    src.mkdir()
    for index in range(6):
        Image.fromarray(_photo(300, 300, index)).save(src / f"{index}.png")
    sizes: list[int] = []
    original = raeg.encode

    def counting(
        originals: torch.Tensor, labels: list[str | None] | None = None
    ) -> tuple[torch.Tensor, list[bytes]]:
        sizes.append(originals.shape[0])
        return original(originals, labels)

    raeg.encode = counting  # type: ignore[method-assign]
    try:
        assert protect_tree(src, tmp_path / "prt", raeg, batch_size=64).ok
    finally:
        del raeg.encode
    assert sizes == [2, 2, 2]


def _sealed(extra: dict) -> bytes:
    keys = RecordKeys.derive(b"material")
    record = RecoveryRecord("RGB", 100, 130, "0" * 64, "1" * 64, keys.key_id, b"x" * 10, extra)
    return record.seal(keys)


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ({"side": 64, "lengths": [5, 5], "digests": ["a" * 64] * 2}, "tiles.lengths' must be 6"),
        ({"side": 64, "lengths": [2] * 6, "digests": ["a" * 64] * 6}, "adds up to 12 bytes"),
        ({"side": 64, "lengths": [5, 5, 0, 0, 0, 0], "digests": ["a"] * 6}, "malformed digest"),
        ({"side": 0, "lengths": [], "digests": []}, "tiles.side' is 0"),
        ({"side": 64, "lengths": [10]}, "must hold exactly"),
        (
            {"side": 64, "lengths": [2] * 5 + [0], "digests": ["a" * 64] * 6, "margin": 64},
            "tiles.margin' is 64",
        ),
        (
            {"side": 64, "lengths": [2] * 5 + [0], "digests": ["a" * 64] * 6, "margin": "8"},
            "tiles.margin' is '8'",
        ),
    ],
)
def test_record_tile_layouts_are_validated(tiles: dict, message: str) -> None:
    keys = RecordKeys.derive(b"material")
    with pytest.raises(BadRecordError, match=message):
        RecoveryRecord.open(_sealed({"tiles": tiles}), keys, "f.png")
    good = {"side": 64, "lengths": [5, 5, 0, 0, 0, 0], "digests": ["a" * 64] * 6}
    assert RecoveryRecord.open(_sealed({"tiles": good}), keys).extra["tiles"] == good
    in_context = {**good, "margin": 32}
    assert RecoveryRecord.open(_sealed({"tiles": in_context}), keys).extra["tiles"] == in_context


def test_a_layout_that_does_not_fit_the_protector_is_refused(raeg: RAEG) -> None:
    image = torch.from_numpy(_photo(64, 96)).permute(2, 0, 1).contiguous()
    protected, layout, data = encode_tiles(raeg, image, 32)
    restored, exact, altered = decode_tiles(raeg, protected, data, layout)
    assert torch.equal(restored, image) and exact and not altered
    bad_side = TileLayout(30, layout.lengths, layout.digests, layout.margin)
    with pytest.raises(ValueError, match="side 30 is not a multiple of the protector's side"):
        decode_tiles(raeg, protected, data, bad_side)
    bad_margin = TileLayout(32, layout.lengths, layout.digests, 6)
    with pytest.raises(ValueError, match="context margin 6 is not a multiple"):
        decode_tiles(raeg, protected, data, bad_margin)
    with pytest.raises(ValueError, match="record holds 6 tiles"):
        decode_tiles(raeg, protected[:, :32], data, layout)


def test_tiled_quality_matches_the_whole_image() -> None:
    a = torch.from_numpy(_photo(150, 200)).permute(2, 0, 1).contiguous()
    b = torch.from_numpy(_photo(150, 200, 7)).permute(2, 0, 1).contiguous()
    tiled_psnr, tiled_ssim = tiled_quality(a, b, 64)
    whole_a, whole_b = a[None].float() / 255, b[None].float() / 255
    assert tiled_psnr == pytest.approx(psnr(whole_a, whole_b).item(), abs=1e-3)
    assert tiled_ssim == pytest.approx(ssim(whole_a, whole_b).item(), abs=0.02)
