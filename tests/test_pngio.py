"""PNG files with private chunks: exact pixels, chunk round trip, corruption detected."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invprotect.files.png import (
    chunk_bytes,
    encode_png,
    insert_chunks,
    iter_chunks,
    read_chunks,
    write_png,
)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4)])
def test_pixels_and_chunks_round_trip(shape: tuple[int, ...], tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    write_png(tmp_path / "x.png", pixels, {b"ipRS": b"\x00\x01payload", b"ipMT": b"{}"})
    data = (tmp_path / "x.png").read_bytes()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    assert read_chunks(data) == {b"ipRS": b"\x00\x01payload", b"ipMT": b"{}"}


def test_bad_chunk_types_and_corrupt_files_are_refused() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    for bad in (b"IPRS", b"ipr", b"iprs"):
        with pytest.raises(ValueError, match="chunk"):
            encode_png(pixels, {bad: b""})
    data = bytearray(encode_png(pixels, {b"ipRS": b"abc"}))
    data[data.index(b"abc")] ^= 1
    with pytest.raises(ValueError, match="corrupt PNG chunk"):
        read_chunks(bytes(data))
    with pytest.raises(ValueError, match="signature"):
        read_chunks(b"GIF89a")
    with pytest.raises(ValueError, match="uint8"):
        encode_png(pixels.astype(np.float32))


def test_chunks_are_listed_in_order_and_inserted_in_their_place() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    data = encode_png(pixels, {b"ipRS": b"abc"})
    kinds = [kind for kind, _ in iter_chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"ipRS" in kinds
    edited = insert_chunks(
        data,
        after_header=chunk_bytes(b"gAMA", b"\x00\x00\xb1\x8f"),
        before_data=chunk_bytes(b"tEXt", b"k\x00v"),
        before_end=chunk_bytes(b"prVt", b"late"),
    )
    kinds = [kind for kind, _ in iter_chunks(edited)]
    assert kinds[:2] == [b"IHDR", b"gAMA"] and kinds[-2:] == [b"prVt", b"IEND"]
    assert kinds.index(b"tEXt") == kinds.index(b"IDAT") - 1
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(edited))), pixels)
    with pytest.raises(ValueError, match="truncated"):
        list(iter_chunks(data[:-6]))
