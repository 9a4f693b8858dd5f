"""PNG files with private chunks: exact pixels, chunk round trip, corruption detected."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invprotect.pngio import encode_png, read_chunks, write_png


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
