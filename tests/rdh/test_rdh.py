"""Reversible data hiding on real CIFAR-10 images: exact payload and cover, exact capacity."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from invprotect.rdh import MAGIC, CapacityError, capacity, capacity_bpp, embed, extract

# Measured on the ten images below (PSNR of marked vs cover, RGB): the minimum over the
# images is 52.6 dB for an empty payload, 45.1 dB at 10% of capacity, 33.7 dB at 50% and
# 27.7 dB at 100%; capacity is 0.36 to 2.86 bits per pixel position, 1.74 on average.
MIN_PSNR_DB = {0.0: 48.0, 0.1: 40.0, 0.5: 30.0, 1.0: 25.0}


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def covers(cifar10_root: Path) -> list[np.ndarray]:
    """The first test image of each CIFAR-10 class, ``(32, 32, 3)`` uint8."""
    classes = sorted(path.name for path in (cifar10_root / "test").iterdir())
    return [_read(sorted((cifar10_root / "test" / name).glob("*.jpg"))[0]) for name in classes]


def _payload(rng: np.random.Generator, size: int) -> bytes:
    return rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def _assert_round_trip(cover: np.ndarray, payload: bytes) -> np.ndarray:
    original = cover.copy()
    marked = embed(cover, payload)
    assert np.array_equal(cover, original), "embed modified its input"
    assert marked.dtype == np.uint8 and marked.shape == cover.shape
    assert not np.array_equal(marked, cover)
    recovered, restored = extract(marked)
    assert recovered == payload
    assert restored.dtype == np.uint8 and restored.shape == cover.shape
    assert np.array_equal(restored, cover)
    return marked


@pytest.mark.parametrize("fraction", sorted(MIN_PSNR_DB))
def test_round_trip_restores_payload_and_cover_exactly(
    covers: list[np.ndarray], fraction: float
) -> None:
    rng = np.random.default_rng(int(fraction * 100))
    psnrs = []
    for cover in covers:
        size = int(capacity(cover) * fraction) // 8
        marked = _assert_round_trip(cover, _payload(rng, size))
        psnrs.append(_psnr(marked, cover))
    print(f"payload {fraction:.0%} of capacity: PSNR {np.round(psnrs, 1)} dB")
    assert min(psnrs) > MIN_PSNR_DB[fraction]


def test_capacity_is_exact_and_reported(covers: list[np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    bpps = []
    for cover in covers:
        bits = capacity(cover)
        assert capacity_bpp(cover) == bits / (32 * 32)
        bpps.append(capacity_bpp(cover))
        _assert_round_trip(cover, _payload(rng, bits // 8))
        too_long = bits // 8 + 1
        with pytest.raises(CapacityError, match=f"payload of {8 * too_long} bits exceeds") as info:
            embed(cover, _payload(rng, too_long))
        assert f"capacity of {bits} bits" in str(info.value)
    print(f"capacity: {np.round(bpps, 3)} bpp, mean {np.mean(bpps):.3f}")
    assert min(bpps) > 0.1
    assert np.mean(bpps) > 1.0


def test_capacity_error_is_a_value_error(covers: list[np.ndarray]) -> None:
    assert issubclass(CapacityError, ValueError)
    with pytest.raises(ValueError, match="exceeds the capacity"):
        embed(covers[0], bytes(32 * 32 * 3))


def test_grayscale_covers_round_trip(covers: list[np.ndarray]) -> None:
    rng = np.random.default_rng(2)
    for cover in covers:
        gray = np.asarray(Image.fromarray(cover).convert("L"))
        bits = capacity(gray)
        assert bits > 0
        _assert_round_trip(gray, _payload(rng, bits // 8))
        _assert_round_trip(gray, _payload(rng, bits // 80))


def test_saturated_blocks_restore_exactly(covers: list[np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    for cover in covers[:4]:
        saturated = cover.copy()
        saturated[4:12, 4:12] = 0
        saturated[20:28, 18:30] = 255
        saturated[0, :, 1] = 255  # the header pixels too
        bits = capacity(saturated)
        assert bits > 0
        for size in (0, bits // 80, bits // 8):
            _assert_round_trip(saturated, _payload(rng, size))


@pytest.mark.parametrize("levels", [(254, 255), (0, 1)])
def test_noisy_saturated_areas_leave_room(
    covers: list[np.ndarray], levels: tuple[int, int]
) -> None:
    # Half the image at 254/255 (or 0/1) at random, as in JPEG-compressed white skies: a
    # two-sided location map would cost about a bit per pixel there.
    rng = np.random.default_rng(levels[0])
    cover = covers[3].copy()
    cover[:16] = rng.choice(levels, size=cover[:16].shape).astype(np.uint8)
    assert capacity(cover) > 8 * 100
    _assert_round_trip(cover, _payload(rng, 100))
    _assert_round_trip(cover, _payload(rng, capacity(cover) // 8))


@pytest.mark.parametrize("value", [0, 1, 254, 255])
@pytest.mark.parametrize("shape", [(32, 32, 3), (32, 32)])
def test_constant_images_restore_exactly(value: int, shape: tuple[int, ...]) -> None:
    cover = np.full(shape, value, dtype=np.uint8)
    bits = capacity(cover)
    assert bits > 0  # perfectly predictable, so every changeable pixel carries a bit
    _assert_round_trip(cover, _payload(np.random.default_rng(value), bits // 8))


def test_images_without_room_refuse_cleanly() -> None:
    noise = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tiny = np.zeros((4, 4), dtype=np.uint8)  # fewer pixels than header bits
    for cover in (noise, tiny):
        assert capacity(cover) == 0
        assert capacity_bpp(cover) == 0.0
        with pytest.raises(CapacityError, match="capacity of 0 bits"):
            embed(cover, b"")


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((32, 32, 3), dtype=np.float32),
        np.zeros((32, 32, 3), dtype=np.uint16),
        np.zeros((32, 32, 3), dtype=np.int64),
        np.zeros(32, dtype=np.uint8),
        np.zeros((2, 32, 32, 3), dtype=np.uint8),
        np.zeros((0, 32), dtype=np.uint8),
    ],
    ids=["float32", "uint16", "int64", "1d", "4d", "empty"],
)
def test_wrong_dtype_or_shape_is_a_value_error(bad: np.ndarray) -> None:
    for function in (capacity, capacity_bpp, extract):
        with pytest.raises(ValueError, match=r"uint8 array of shape \(H, W\) or \(H, W, C\)"):
            function(bad)
    with pytest.raises(ValueError, match="uint8 array"):
        embed(bad, b"x")


def test_wrong_types_are_type_errors(covers: list[np.ndarray]) -> None:
    with pytest.raises(TypeError, match="NumPy array"):
        embed(covers[0].tolist(), b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="payload must be bytes"):
        embed(covers[0], "text")  # type: ignore[arg-type]


def test_unmarked_images_carry_no_embedding(covers: list[np.ndarray]) -> None:
    for cover in covers:
        with pytest.raises(ValueError, match="no valid embedding"):
            extract(cover)


def _tamper(marked: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    tampered = marked.copy()
    flat = tampered.reshape(-1)
    if how == "one_lsb":  # one pixel outside the header, its least significant bit
        index = rng.integers(64, flat.size)
        flat[index] ^= 1
    elif how == "header_lsb":  # one of the end positions in the header
        flat[30] ^= 1
    elif how == "last_row":  # pixels the passes may never have touched
        tampered[-1, :, 0] ^= 2
    else:  # a dark block painted over the image
        tampered[10:16, 10:16] = 0
    assert not np.array_equal(tampered, marked)
    return tampered


@pytest.mark.parametrize("how", ["one_lsb", "header_lsb", "last_row", "block"])
def test_tampered_images_are_rejected(covers: list[np.ndarray], how: str) -> None:
    rng = np.random.default_rng(5)
    for cover in covers:
        marked = embed(cover, _payload(rng, capacity(cover) // 16))
        with pytest.raises(ValueError, match="no valid embedding"):
            extract(_tamper(marked, how, rng))


def test_header_starts_with_the_magic_number(covers: list[np.ndarray]) -> None:
    marked = embed(covers[0], b"payload")
    lsbs = marked.reshape(-1)[:16] & 1
    assert int("".join(map(str, lsbs)), 2) == MAGIC


def test_embedding_is_deterministic(covers: list[np.ndarray]) -> None:
    payload = b"the same payload"
    assert np.array_equal(embed(covers[1], payload), embed(covers[1], payload))


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    index=st.integers(0, 9),
    height=st.integers(8, 32),
    width=st.integers(8, 32),
    gray=st.booleans(),
    payload=st.binary(max_size=48),
)
def test_any_payload_within_capacity_round_trips(
    covers: list[np.ndarray], index: int, height: int, width: int, gray: bool, payload: bytes
) -> None:
    cover = covers[index][:height, :width]
    if gray:
        cover = np.ascontiguousarray(cover[:, :, 1])
    bits = capacity(cover)
    if 8 * len(payload) > bits:
        with pytest.raises(CapacityError):
            embed(cover, payload)
    elif bits > 0:
        _assert_round_trip(cover, payload)
    else:  # an empty payload where the side information fits exactly, or does not fit
        try:
            marked = embed(cover, payload)
        except CapacityError:
            return
        recovered, restored = extract(marked)
        assert recovered == payload and np.array_equal(restored, cover)


@pytest.mark.parametrize("module_name", ["invprotect.rdh", "invprotect.rdh.pee"])
def test_docstring_examples_run(module_name: str) -> None:
    result = doctest.testmod(importlib.import_module(module_name), verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_views_with_other_strides_work_like_contiguous_arrays(cifar10_root: Path) -> None:
    path = sorted((cifar10_root / "test" / "cat").glob("*.jpg"))[0]
    planar = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1))
    view = planar.transpose(1, 2, 0)  # (H, W, C) with the strides of a permuted tensor
    assert not view.flags.c_contiguous
    marked = embed(view, b"payload")
    payload, cover = extract(marked[::1, ::1])
    assert payload == b"payload" and np.array_equal(cover, view)
