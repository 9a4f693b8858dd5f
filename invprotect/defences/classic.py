"""Classic purifications: real JPEG, down-and-up resizing, noise, filters, grayscale, bit depth.

Each operation exists as a function (``jpeg_compress``, ``resize_down_up``, ...) and as a
`invprotect.defences.Defence` module that checks its input and rounds its output
onto the 8-bit grid. The functions take and return float RGB ``(B, 3, H, W)`` in
``[0, 1]``; their output is not rounded (except `jpeg_compress`, whose output is
8-bit by nature).

A defence is an attack's operation with fixed parameters, rounded to 8 bits: JPEG is
`invprotect.attacks.real_jpeg`, the median filter `invprotect.attacks.median_blur`,
the blur `invprotect.attacks.gaussian_blur`, grayscale `invprotect.attacks.grayscale`
and the bit depth `invprotect.attacks.quantize_ste`. Two keep their own operation,
because their outputs are part of saved results: `resize_down_up` interpolates as PIL
does (the attack ``resize`` uses kornia's Gaussian antialiasing), and
`add_gaussian_noise` draws one generator per image in 8-bit units (the attack
``gaussian_noise`` draws per-sample seeds in ``[0, 1]`` units; see the conventions page).

Parameters are checked when a module is built, so that a bad command-line value fails
before any image is read.
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from invprotect.attacks.filters import gaussian_blur as attack_gaussian_blur
from invprotect.attacks.filters import median_blur
from invprotect.attacks.jpeg import real_jpeg
from invprotect.attacks.pixel import LUMA_WEIGHTS as LUMA_WEIGHTS  # re-exported (moved)
from invprotect.attacks.pixel import grayscale, quantize_ste
from invprotect.defences._base import (
    Defence,
    GeneratorArg,
    draw,
    register_defence,
    resolve_generator,
)

Interpolation = Literal["bilinear", "bicubic", "nearest", "area"]
"""Interpolation modes of `resize_down_up`."""

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area")


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------- JPEG


def jpeg_compress(images: Tensor, quality: int) -> Tensor:
    """Encode every image as a real JPEG file (libjpeg, through torchvision) and decode it.

    The codec is the attacks' `invprotect.attacks.real_jpeg`: the images are rounded to
    ``uint8`` first; torchvision's encoder uses libjpeg's defaults (baseline, 4:2:0
    chroma subsampling) at the given quality.

    Args:
        images: Float RGB ``(B, 3, H, W)`` in ``[0, 1]``.
        quality: JPEG quality factor, 1 (worst) to 100 (best).

    Returns:
        The decoded images, float, on the 8-bit grid, on the input's device.
    """
    return real_jpeg(images, _check_quality(quality))


def _check_quality(quality: object) -> int:
    quality = _check_int("quality", quality)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    return quality


@register_defence("jpeg")
class JPEG(Defence):
    """Real JPEG compression at a fixed quality (libjpeg through torchvision).

    Args:
        quality: Quality factor, 1..100 (the paper reports 90 and 50).

    Raises:
        ValueError: If ``quality`` is not an integer in 1..100.

    Example:
        >>> import torch
        >>> x = torch.full((1, 3, 16, 16), 128 / 255)
        >>> JPEG(quality=50)(x).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(self, quality: int = 50) -> None:
        super().__init__()
        self.quality = _check_quality(quality)

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Encode and decode as JPEG at `quality`."""
        return jpeg_compress(images, self.quality)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"quality={self.quality}"


# -------------------------------------------------------------------------- resize


def _check_scale(scale: object) -> float:
    scale = _check_number("scale", scale)
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"resize scale must be in (0, 1], got {scale}")
    return scale


def _check_interpolation(interpolation: object) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    return str(interpolation)


def _interpolate(images: Tensor, size: tuple[int, int], interpolation: str) -> Tensor:
    if interpolation == "nearest":
        # 'nearest-exact' samples pixel centres (like PIL); plain 'nearest' is shifted.
        return F.interpolate(images, size=size, mode="nearest-exact")
    if interpolation == "area":
        return F.interpolate(images, size=size, mode="area")
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(
        images, size=size, mode=interpolation, align_corners=False, antialias=shrinking
    )


def resize_down_up(
    images: Tensor, scale: float, interpolation: Interpolation = "bilinear"
) -> Tensor:
    """Shrink by ``scale`` and enlarge back to the original size.

    The small size is ``max(1, round(H * scale)) x max(1, round(W * scale))``. Bilinear
    and bicubic shrinking use antialiasing (as PIL does); ``"nearest"`` samples pixel
    centres; ``"area"`` averages when shrinking and repeats pixels when enlarging.
    Bicubic overshoot is clamped to ``[0, 1]``.

    Args:
        images: Float RGB ``(B, 3, H, W)`` in ``[0, 1]``.
        scale: Shrink factor in ``(0, 1]``; ``1`` returns the images unchanged.
        interpolation: ``"bilinear"``, ``"bicubic"``, ``"nearest"`` or ``"area"``.
    """
    scale = _check_scale(scale)
    interpolation = _check_interpolation(interpolation)
    height, width = images.shape[-2:]
    small = (max(1, round(height * scale)), max(1, round(width * scale)))
    if small == (height, width):
        return images.clone()
    shrunk = _interpolate(images, small, interpolation)
    return _interpolate(shrunk, (height, width), interpolation).clamp(0.0, 1.0)


@register_defence("resize")
class Resize(Defence):
    """Down-and-up resizing: shrink by ``scale``, enlarge back.

    At 32x32 a factor of 0.5 is itself destructive (classifiers lose about half their
    accuracy on clean images), hence the milder default of 0.75.

    Args:
        scale: Shrink factor in ``(0, 1]``.
        interpolation: ``"bilinear"`` (default), ``"bicubic"``, ``"nearest"`` or ``"area"``.

    Raises:
        ValueError: If ``scale`` is not in ``(0, 1]`` or the interpolation is unknown.
    """

    def __init__(self, scale: float = 0.75, interpolation: Interpolation = "bilinear") -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.interpolation = _check_interpolation(interpolation)

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Shrink by `scale` and enlarge back."""
        return resize_down_up(images, self.scale, self.interpolation)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"scale={self.scale}, interpolation={self.interpolation!r}"


# -------------------------------------------------------------------- Gaussian noise


def _check_noise_sigma(sigma: object) -> float:
    sigma = _check_number("sigma", sigma)
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0 (in 8-bit levels), got {sigma}")
    return sigma


def add_gaussian_noise(images: Tensor, sigma: float, generator: GeneratorArg = None) -> Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` **8-bit levels** and clamp.

    ``sigma`` is in 8-bit units: ``sigma=8`` adds noise of standard deviation
    ``8 / 255`` to images in ``[0, 1]`` (about 30 dB PSNR before clamping and rounding).

    Args:
        images: Float RGB ``(B, 3, H, W)`` in ``[0, 1]``.
        sigma: Standard deviation in 8-bit levels (``>= 0``).
        generator: ``None`` (seed 0), one generator, or one per image.
    """
    sigma = _check_noise_sigma(sigma)
    generators = resolve_generator(generator, images.shape[0], seed=0)
    noise = draw("normal", generators, images.shape[0], images.shape[1:], images.device)
    return (images + noise.to(images.dtype) * (sigma / 255.0)).clamp(0.0, 1.0)


@register_defence("gaussian_noise")
class GaussianNoise(Defence):
    """Additive white Gaussian noise, ``sigma`` in **8-bit levels** (``sigma=8`` means ``8/255``).

    Args:
        sigma: Standard deviation in 8-bit levels, ``>= 0``.
        seed: Seed used when no generator is passed to `forward`, so that repeated
            calls give the same noise.

    Raises:
        ValueError: If ``sigma`` is negative.
    """

    stochastic = True

    def __init__(self, sigma: float = 8.0, seed: int = 0) -> None:
        super().__init__()
        self.sigma = _check_noise_sigma(sigma)
        self.seed = _check_int("seed", seed)

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Add the noise, drawn from ``generator`` (or `seed`)."""
        generators = resolve_generator(generator, images.shape[0], self.seed)
        return add_gaussian_noise(images, self.sigma, generators)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"sigma={self.sigma} (8-bit levels), seed={self.seed}"


# --------------------------------------------------------------------- median filter


def _check_odd_kernel(name: str, kernel_size: object) -> int:
    kernel_size = _check_int(name, kernel_size)
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer, got {kernel_size}")
    return kernel_size


def median_filter(images: Tensor, kernel_size: int = 3) -> Tensor:
    """Median of each ``kernel_size x kernel_size`` window: `invprotect.attacks.median_blur`.

    Reflected borders (replicated on tiny images) keep edge pixels from being pulled
    towards black, as zero padding would do.

    Args:
        images: Float RGB ``(B, 3, H, W)``.
        kernel_size: Odd window size.
    """
    return median_blur(images, _check_odd_kernel("kernel_size", kernel_size))


@register_defence("median_filter")
class MedianFilter(Defence):
    """Median filter over square windows (kornia ``median_blur``, reflected borders).

    Args:
        kernel_size: Odd window size (default 3).

    Raises:
        ValueError: If ``kernel_size`` is even or not positive.
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.kernel_size = _check_odd_kernel("kernel_size", kernel_size)

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Median-filter with `kernel_size` windows."""
        return median_filter(images, self.kernel_size)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"kernel_size={self.kernel_size}"


# --------------------------------------------------------------------- Gaussian blur


def _check_blur(sigma: object, kernel_size: object) -> tuple[float, int]:
    sigma = _check_number("sigma", sigma)
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0 (in pixels), got {sigma}")
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3.0 * sigma) + 1
    return sigma, _check_odd_kernel("kernel_size", kernel_size)


def gaussian_blur(images: Tensor, sigma: float = 1.0, kernel_size: int | None = None) -> Tensor:
    """Gaussian blur with reflected borders: `invprotect.attacks.gaussian_blur`.

    Args:
        images: Float RGB ``(B, 3, H, W)``.
        sigma: Standard deviation in pixels (``> 0``).
        kernel_size: Odd kernel size; ``None`` takes ``2 * ceil(3 * sigma) + 1``.
    """
    sigma, kernel_size = _check_blur(sigma, kernel_size)
    return attack_gaussian_blur(images, sigma, kernel_size)


@register_defence("gaussian_blur")
class GaussianBlur(Defence):
    """Gaussian blur.

    Args:
        sigma: Standard deviation in pixels, ``> 0`` (default 1).
        kernel_size: Odd kernel size; ``None`` takes ``2 * ceil(3 * sigma) + 1``.

    Raises:
        ValueError: If ``sigma <= 0`` or ``kernel_size`` is even or not positive.
    """

    def __init__(self, sigma: float = 1.0, kernel_size: int | None = None) -> None:
        super().__init__()
        self.sigma, self.kernel_size = _check_blur(sigma, kernel_size)

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Blur with `sigma` and `kernel_size`."""
        return gaussian_blur(images, self.sigma, self.kernel_size)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"sigma={self.sigma}, kernel_size={self.kernel_size}"


# ------------------------------------------------------------------------- grayscale


def to_grayscale(images: Tensor) -> Tensor:
    """Luminance ``0.299 R + 0.587 G + 0.114 B`` (BT.601), replicated to three channels.

    The operation is `invprotect.attacks.grayscale`.

    Args:
        images: Float RGB ``(B, 3, H, W)``.
    """
    return grayscale(images)


@register_defence("grayscale")
class Grayscale(Defence):
    """Convert to luminance (BT.601 weights) and replicate it to the three RGB channels."""

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Replace each pixel by its luminance."""
        return to_grayscale(images)


# ------------------------------------------------------------------------- bit depth


def _check_bits(bits: object) -> int:
    bits = _check_int("bits", bits)
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    return bits


def reduce_bit_depth(images: Tensor, bits: int) -> Tensor:
    """Keep ``2**bits`` evenly spaced levels per channel: ``round(x * n) / n``, ``n = 2**bits - 1``.

    This is the bit-depth squeezing of feature squeezing (Xu et al., 2018); the
    levels span the full range, so black and white stay black and white. The operation
    is the forward pass of `invprotect.attacks.quantize_ste` with ``2 ** bits`` levels.

    Args:
        images: Float RGB ``(B, 3, H, W)`` in ``[0, 1]``.
        bits: Bits per channel, 1..8 (8 leaves 8-bit images unchanged).
    """
    return quantize_ste(images, 2 ** _check_bits(bits))


@register_defence("bit_depth")
class BitDepth(Defence):
    """Colour-depth reduction to ``bits`` bits per channel (feature squeezing).

    Args:
        bits: Bits per channel, 1..8 (default 4).

    Raises:
        ValueError: If ``bits`` is outside 1..8.
    """

    def __init__(self, bits: int = 4) -> None:
        super().__init__()
        self.bits = _check_bits(bits)

    def purify(self, images: Tensor, generator: GeneratorArg) -> Tensor:
        """Quantise to `bits` bits per channel."""
        return reduce_bit_depth(images, self.bits)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"bits={self.bits}"
