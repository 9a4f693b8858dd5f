"""Validation and sampling helpers shared by the attacks (private)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from invprotect import checks

Range = tuple[float, float]
"""A closed interval ``(low, high)`` from which a parameter is drawn uniformly."""

IntRange = tuple[int, int]
"""A closed interval of integers ``(low, high)``."""


def check_range(
    owner: str,
    name: str,
    value: float | Sequence[float],
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    open_minimum: bool = False,
) -> Range:
    """Validate a sampling range given as a number (fixed value) or a pair ``(low, high)``.

    Args:
        owner: Name of the attack, for the message.
        name: Name of the argument, for the message.
        value: A number or a pair ``(low, high)`` with ``low <= high``.
        minimum: Smallest allowed value.
        maximum: Largest allowed value.
        open_minimum: Whether ``minimum`` itself is excluded.

    Returns:
        The range as a pair of floats.

    Raises:
        ValueError: If the value is not a number or a pair, is not finite where the bounds
            are finite, has ``low > high`` or leaves the allowed interval.
    """
    low, high = _as_pair(owner, name, value)
    bracket = "(" if open_minimum else "["
    expected = f"{bracket}{minimum:g}, {maximum:g}]"
    below = low <= minimum if open_minimum else low < minimum
    if math.isnan(low) or math.isnan(high) or below or high > maximum or low > high:
        raise ValueError(
            f"{owner}: {name} must be a number or a pair (low, high) with low <= high inside "
            f"{expected}; received {value!r}"
        )
    return float(low), float(high)


def check_int_range(
    owner: str,
    name: str,
    value: int | Sequence[int],
    *,
    minimum: int,
    maximum: int | None = None,
    odd: bool = False,
) -> IntRange:
    """Validate an integer range given as an int (fixed value) or a pair ``(low, high)``.

    Args:
        owner: Name of the attack, for the message.
        name: Name of the argument, for the message.
        value: An int or a pair of ints ``(low, high)`` with ``low <= high``.
        minimum: Smallest allowed value.
        maximum: Largest allowed value (``None``: no upper bound).
        odd: Whether both ends must be odd (kernel sizes).

    Returns:
        The range as a pair of ints.

    Raises:
        ValueError: If the value is not an int or a pair of ints, has ``low > high``, leaves
            the allowed interval or, with ``odd``, has an even end.
    """
    low, high = _as_pair(owner, name, value)
    top = "inf" if maximum is None else str(maximum)
    kind = "odd ints" if odd else "ints"
    ok = (
        _is_int(low)
        and _is_int(high)
        and minimum <= low <= high
        and (maximum is None or high <= maximum)
        and (not odd or (low % 2 == 1 and high % 2 == 1))
    )
    if not ok:
        raise ValueError(
            f"{owner}: {name} must be an int or a pair (low, high) of {kind} with low <= high "
            f"inside [{minimum}, {top}]; received {value!r}"
        )
    return int(low), int(high)


def check_weights(owner: str, weights: Mapping[str, float]) -> dict[str, float]:
    """Validate non-negative finite weights with a positive sum and normalise them to sum 1.

    Args:
        owner: Name of the caller, for the message.
        weights: Mapping from a name to its weight.

    Returns:
        The normalised weights, in the mapping's order.

    Raises:
        ValueError: If the mapping is empty, a weight is negative, not finite or not a
            number, or all weights are zero.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(
            f"{owner}: weights must be a non-empty mapping name -> weight; received {weights!r}"
        )
    for key, weight in weights.items():
        if (
            not isinstance(weight, (int, float))
            or isinstance(weight, bool)
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ValueError(
                f"{owner}: weight of {key!r} must be a finite number >= 0; received {weight!r}"
            )
    total = float(sum(weights.values()))
    if total <= 0:
        raise ValueError(f"{owner}: at least one weight must be positive; received {weights!r}")
    return {key: float(weight) / total for key, weight in weights.items()}


def check_images(owner: str, x: Tensor, *, rgb: bool = False) -> None:
    """Check that ``x`` is a floating ``(B, C, H, W)`` batch (``C == 3`` with ``rgb``).

    Raises:
        TypeError: If ``x`` is not a floating-point tensor (an `invprotect.checks.ImageTypeError`,
            also a ``ValueError``).
        ValueError: If it is not 4-D, or (with ``rgb``) not 3-channel.
    """
    checks.check_images(owner, x, channels=3 if rgb else None)


def check_params(
    owner: str, params: Mapping[str, Tensor], names: Sequence[str], batch_size: int
) -> None:
    """Check that ``params`` has exactly the keys ``names``, each a tensor with ``batch_size`` rows.

    Raises:
        ValueError: If a key is missing or unexpected, or a value is not a tensor with one
            entry per sample.
    """
    if set(params) != set(names):
        raise ValueError(
            f"{owner}: expected parameters {sorted(names)}; received {sorted(params)}. "
            "Use the dict returned by sample_params"
        )
    for key in names:
        value = params[key]
        if not isinstance(value, Tensor) or value.ndim < 1 or value.shape[0] != batch_size:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"{owner}: parameter {key!r} must be a tensor with {batch_size} rows (one per "
                f"sample); received {shape}"
            )


def uniform(
    batch_size: int, bounds: Range, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """``batch_size`` float32 values drawn uniformly from ``bounds``."""
    low, high = bounds
    draw = torch.rand(batch_size, generator=generator, device=device)
    return low + (high - low) * draw


def integers(
    batch_size: int, bounds: IntRange, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """``batch_size`` int64 values drawn uniformly from the closed range ``bounds``."""
    low, high = bounds
    return torch.randint(low, high + 1, (batch_size,), generator=generator, device=device)


def odd_integers(
    batch_size: int, bounds: IntRange, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """``batch_size`` odd int64 values drawn uniformly from the odd ends ``bounds``."""
    low, high = bounds
    steps = integers(batch_size, (0, (high - low) // 2), generator, device)
    return low + 2 * steps


def apply_grouped(x: Tensor, keys: Tensor, function: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Apply ``function(x[index], index)`` to each group of samples sharing a key.

    Used where an operation needs one Python-level setting per call (a kernel size, an
    output size): samples with equal keys go through one call. The result keeps the
    input's sample order and the autograd graph of every group. The samples are sorted
    by group with one batch permutation (and put back with its inverse), whose backward
    pass is a gather, not a scatter.

    Args:
        x: Batch ``(B, C, H, W)``.
        keys: One key per sample, shape ``(B,)`` or ``(B, K)``.
        function: Maps a sub-batch and its sample indices (on ``x``'s device, in
            increasing order) to an output of the same shape.

    Returns:
        The outputs, in the order of ``x``.
    """
    keys = keys.reshape(keys.shape[0], -1)
    _, inverse, counts = torch.unique(keys.cpu(), dim=0, return_inverse=True, return_counts=True)
    if counts.numel() == 1:
        return function(x, torch.arange(x.shape[0], device=x.device))
    order = torch.sort(inverse, stable=True).indices
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel())
    order, position = order.to(x.device), position.to(x.device)
    parts = _PermuteBatch.apply(x, order, position).split(counts.tolist())
    indices = order.split(counts.tolist())
    outputs = [function(part, index) for part, index in zip(parts, indices, strict=True)]
    return _PermuteBatch.apply(torch.cat(outputs), position, order)


class _PermuteBatch(torch.autograd.Function):
    """``x[order]`` along the batch whose backward is ``grad[position]`` (the inverse)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, order: Tensor, position: Tensor) -> Tensor:
        ctx.save_for_backward(order, position)
        return x.index_select(0, order)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        order, position = ctx.saved_tensors
        return _PermuteBatch.apply(grad, position, order), None, None


def _as_pair(owner: str, name: str, value: object) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value, value  # type: ignore[return-value]
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return value[0], value[1]
    raise ValueError(f"{owner}: {name} must be a number or a pair (low, high); received {value!r}")


def _is_int(value: float) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_LOW_PRECISION = (torch.float16, torch.bfloat16)

F = TypeVar("F", bound=Callable[..., Tensor])


def image_op(owner: str, *, rgb: bool = False) -> Callable[[F], F]:
    """Decorate a functional attack ``fn(x, ...)``: check ``x``, fix the dtype, clamp.

    The wrapped function receives ``x`` in ``float32`` when it is ``float16`` or
    ``bfloat16``; its result is clamped to ``[0, 1]`` by `clamp_unit` and cast back
    to the input dtype.
    """

    def decorator(function: F) -> F:
        @functools.wraps(function)
        def wrapper(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            check_images(owner, x, rgb=rgb)
            dtype = x.dtype
            work = x.float() if dtype in _LOW_PRECISION else x
            return clamp_unit(function(work, *args, **kwargs)).to(dtype)

        return wrapper  # type: ignore[return-value]

    return decorator


def clamp_unit(x: Tensor) -> Tensor:
    """Clamp to ``[0, 1]``; the gradient passes inside, boundaries included, and not outside.

    `torch.Tensor.clamp` gives a zero gradient at the boundary values themselves,
    which are common in images (8-bit 0 and 255, real JPEG output): an identity attack
    would then cut the gradient of every black or white pixel. Outside ``[0, 1]`` the
    gradient is zero, as for the real clamp (a straight-through clamp makes the range of
    a trained generator drift).
    """
    inside = (x >= 0) & (x <= 1)
    return torch.where(inside, x, x.detach().clamp(0.0, 1.0))


def per_sample(value: Tensor | float, x: Tensor, owner: str, name: str) -> Tensor:
    """``value`` as a ``(B,)`` tensor of ``x``'s dtype and device (a number is broadcast).

    Raises:
        ValueError: If a tensor ``value`` has neither one element nor one per sample.
    """
    batch = x.shape[0]
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device).detach()
    if value.numel() == 1:
        return value.reshape(1).expand(batch)
    if value.shape != (batch,):
        raise ValueError(
            f"{owner}: {name} must be a number or a tensor of shape ({batch},); received "
            f"shape {tuple(value.shape)}"
        )
    return value
