"""Rhombus prediction and one sorted prediction-error-expansion pass (Sachnev et al., 2009).

Arrays here are ``int64`` of shape ``(H, W, C)``; each channel is a plane of its own. A
pixel is predicted by the rounded mean of its 4-neighbours inside the image (3 on an
edge, 2 in a corner), so the pixels of one checkerboard colour are predicted from the
other colour only and can all be changed in one pass without touching any prediction.
"""

from __future__ import annotations

import numpy as np


def neighbour_count(shape: tuple[int, int, int]) -> np.ndarray:
    """How many of each pixel's 4-neighbours lie inside an image of ``shape``."""
    return _four_neighbour_sum(np.ones(shape, dtype=np.int64))


def _four_neighbour_sum(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    return padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]


def predict(x: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rhombus prediction and local complexity of every pixel (where ``count > 0``).

    Returns:
        ``(prediction, complexity)``: the rounded mean ``floor((s + c // 2) / c)`` of the
        ``c`` neighbours summing to ``s``, and their variance, which orders the pixels
        of a pass from smooth to busy.
    """
    total = _four_neighbour_sum(x)
    squares = _four_neighbour_sum(x * x)
    safe = np.maximum(count, 1)
    prediction = (total + safe // 2) // safe
    # c * sum(n^2) - (sum n)^2 is an exact integer; one correctly rounded division by c^2.
    complexity = (count * squares - total * total) / (safe * safe)
    return prediction, complexity


def sorted_pass(
    x: np.ndarray, members: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices of a pass's pixels from smooth to busy, and their predictions.

    Ties keep the raster order, so the decoder, which sees the same neighbours, finds
    the same order.
    """
    prediction, complexity = predict(x, count)
    order = np.argsort(complexity.reshape(-1)[members], kind="stable")
    indices = members[order]
    return indices, prediction.reshape(-1)[indices]


def expandable(errors: np.ndarray, t_n: int, t_p: int) -> np.ndarray:
    """Whether each prediction error lies in the expansion bins ``[t_n, t_p)``."""
    return (errors >= t_n) & (errors < t_p)


def embed_pass(
    x: np.ndarray,
    members: np.ndarray,
    count: np.ndarray,
    bits: np.ndarray,
    t_n: int,
    t_p: int,
) -> tuple[np.ndarray, int] | None:
    """Embed ``bits`` into one pass; ``None`` when its pixels cannot carry them all.

    In sorted order, errors in ``[t_n, t_p)`` become ``2e + b``, errors ``>= t_p`` become
    ``e + t_p`` and errors ``< t_n`` become ``e + t_n``, up to and including the pixel
    that takes the last bit; later pixels are left alone.

    Returns:
        ``(marked, end)``: a new array and the number of sorted pixels processed.
    """
    if bits.size == 0:
        return x.copy(), 0
    indices, prediction = sorted_pass(x, members, count)
    errors = x.reshape(-1)[indices] - prediction
    positions = np.flatnonzero(expandable(errors, t_n, t_p))
    if positions.size < bits.size:
        return None
    end = int(positions[bits.size - 1]) + 1
    errors, prediction = errors[:end], prediction[:end]
    carries = expandable(errors, t_n, t_p)
    payload = np.zeros(end, dtype=np.int64)
    payload[carries] = bits
    shifted = np.where(errors >= t_p, errors + t_p, errors + t_n)
    marked = x.copy()
    marked.reshape(-1)[indices[:end]] = prediction + np.where(
        carries, 2 * errors + payload, shifted
    )
    return marked, end


def extract_pass(
    x: np.ndarray, members: np.ndarray, count: np.ndarray, end: int, t_n: int, t_p: int
) -> tuple[np.ndarray, np.ndarray]:
    """Invert `embed_pass`: the restored array and the bits, in embedding order."""
    indices, prediction = sorted_pass(x, members, count)
    indices, prediction = indices[:end], prediction[:end]
    marked_errors = x.reshape(-1)[indices] - prediction
    carries = (marked_errors >= 2 * t_n) & (marked_errors < 2 * t_p)
    bits = (marked_errors[carries] & 1).astype(np.uint8)
    shifted = np.where(marked_errors >= 2 * t_p, marked_errors - t_p, marked_errors - t_n)
    restored = x.copy()
    restored.reshape(-1)[indices] = prediction + np.where(carries, marked_errors >> 1, shifted)
    return restored, bits


def count_expandable(
    x: np.ndarray, members: np.ndarray, count: np.ndarray, t_n: int, t_p: int
) -> int:
    """How many bits a pass over ``members`` of ``x`` can carry."""
    prediction, _ = predict(x, count)
    errors = x.reshape(-1)[members] - prediction.reshape(-1)[members]
    return int(expandable(errors, t_n, t_p).sum())


def count_surely_expandable(
    low: np.ndarray, high: np.ndarray, members: np.ndarray, count: np.ndarray, t_n: int, t_p: int
) -> int:
    """A lower bound on `count_expandable` for every array between ``low`` and ``high``.

    ``low`` and ``high`` agree on ``members`` and bound every other pixel. The rounded
    mean grows with each neighbour, so a member's error lies between its error against
    ``high`` and its error against ``low``; the member surely carries a bit when both do.
    """
    prediction_low, _ = predict(low, count)
    prediction_high, _ = predict(high, count)
    values = low.reshape(-1)[members]
    error_max = values - prediction_low.reshape(-1)[members]
    error_min = values - prediction_high.reshape(-1)[members]
    return int(((error_min >= t_n) & (error_max < t_p)).sum())
