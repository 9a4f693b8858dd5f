"""Filtering attacks: Gaussian blur and median filter (kornia's filters)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import kornia
import torch
from torch import Tensor

from invprotect.attacks._checks import (
    apply_grouped,
    check_int_range,
    check_range,
    image_op,
    odd_integers,
    per_sample,
    uniform,
)
from invprotect.attacks.base import Attack, AttackParams, register_attack


def _kernel_sizes(kernel_size: Tensor | int, x: Tensor, owner: str) -> Tensor:
    sizes = torch.as_tensor(kernel_size, dtype=torch.long).reshape(-1).cpu()
    if sizes.numel() == 1:
        sizes = sizes.expand(x.shape[0])
    if (
        sizes.shape != (x.shape[0],)
        or bool(torch.any(sizes < 1))
        or bool(torch.any(sizes % 2 == 0))
    ):
        raise ValueError(
            f"{owner}: kernel_size must be an odd int >= 1 or a tensor of {x.shape[0]} such "
            f"ints; received {sizes.tolist()}"
        )
    return sizes


def border_type(kernel_size: int, height: int, width: int) -> str:
    """Reflected borders where the image is larger than half the kernel, else replicated.

    Reflection padding needs more pixels than the padding; smaller images (a thumbnail
    under a wide kernel) are padded by repeating their edge pixels instead.

    Example:
        >>> border_type(5, 32, 32), border_type(5, 2, 32)
        ('reflect', 'replicate')
    """
    return "reflect" if kernel_size // 2 < min(height, width) else "replicate"


@image_op("gaussian_blur")
def gaussian_blur(x: Tensor, sigma: Tensor | float, kernel_size: Tensor | int) -> Tensor:
    """Blur each sample with an isotropic Gaussian (`kornia.filters.gaussian_blur2d`).

    Samples with equal kernel sizes are filtered in one call. Borders are reflected
    (replicated on images smaller than half the kernel: see `border_type`).

    Args:
        x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
        sigma: Standard deviation in pixels per sample ``(B,)`` or one number, ``> 0``.
        kernel_size: Odd kernel side per sample ``(B,)`` or one int.

    Returns:
        The blurred images, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a kernel size is not an odd positive int.

    Example:
        >>> gaussian_blur(torch.rand(2, 3, 16, 16), 1.0, 5).shape
        torch.Size([2, 3, 16, 16])
    """
    sigma = per_sample(sigma, x, "gaussian_blur", "sigma")
    sizes = _kernel_sizes(kernel_size, x, "gaussian_blur")

    def blur(part: Tensor, index: Tensor) -> Tensor:
        size = int(sizes[index[0].item()])
        part_sigma = sigma.index_select(0, index).unsqueeze(1).expand(-1, 2)
        border = border_type(size, *part.shape[-2:])
        return kornia.filters.gaussian_blur2d(part, (size, size), part_sigma, border_type=border)

    return apply_grouped(x, sizes, blur)


@image_op("median_blur")
def median_blur(x: Tensor, kernel_size: Tensor | int) -> Tensor:
    """Median-filter each sample (`kornia.filters.median_blur`).

    Samples with equal kernel sizes are filtered in one call. Borders are reflected
    (replicated on images smaller than half the kernel: see `border_type`). The gradient
    flows to the pixel that is each window's median (exact almost everywhere: a selection).

    Args:
        x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
        kernel_size: Odd kernel side per sample ``(B,)`` or one int.

    Returns:
        The filtered images, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a kernel size is not an odd positive int.

    Example:
        >>> median_blur(torch.rand(2, 3, 16, 16), 3).shape
        torch.Size([2, 3, 16, 16])
    """
    sizes = _kernel_sizes(kernel_size, x, "median_blur")

    def filter_(part: Tensor, index: Tensor) -> Tensor:
        size = int(sizes[index[0].item()])
        border = border_type(size, *part.shape[-2:])
        return kornia.filters.median_blur(part, (size, size), border_type=border)

    return apply_grouped(x, sizes, filter_)


@register_attack("gaussian_blur")
class GaussianBlur(Attack):
    """Gaussian blur with a per-sample standard deviation and kernel size.

    Parameters per sample: ``sigma`` ``(B,)`` drawn uniformly from ``sigma`` and
    ``kernel_size`` ``(B,)`` (int64) drawn uniformly among the odd sizes of
    ``kernel_size``. See `gaussian_blur`.

    Args:
        sigma: Standard deviation in pixels, a number or a range, ``> 0``.
        kernel_size: Odd kernel side, an int or a range ``(low, high)`` of odd ints ``>= 1``.

    Raises:
        ValueError: If a range is invalid.

    Example:
        >>> attack = GaussianBlur(sigma=(0.5, 1.5), kernel_size=(3, 7))
        >>> attack(torch.rand(4, 3, 16, 16)).shape
        torch.Size([4, 3, 16, 16])
    """

    param_names: ClassVar[tuple[str, ...]] = ("sigma", "kernel_size")

    def __init__(
        self,
        sigma: float | Sequence[float] = (0.5, 1.5),
        kernel_size: int | Sequence[int] = (3, 7),
    ) -> None:
        super().__init__()
        self.sigma = check_range("GaussianBlur", "sigma", sigma, minimum=0.0, open_minimum=True)
        self.kernel_size = check_int_range(
            "GaussianBlur", "kernel_size", kernel_size, minimum=1, odd=True
        )

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> AttackParams:
        return {
            "sigma": uniform(batch_size, self.sigma, generator, device),
            "kernel_size": odd_integers(batch_size, self.kernel_size, generator, device),
        }

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return gaussian_blur(x, params["sigma"], params["kernel_size"])

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"sigma={self.sigma}, kernel_size={self.kernel_size}"


@register_attack("median_blur")
class MedianBlur(Attack):
    """Median filter with a per-sample kernel size.

    Parameter per sample: ``kernel_size`` ``(B,)`` (int64), drawn uniformly among the odd
    sizes of ``kernel_size``. See `median_blur`.

    Args:
        kernel_size: Odd kernel side, an int or a range ``(low, high)`` of odd ints ``>= 1``.

    Raises:
        ValueError: If the range is invalid.

    Example:
        >>> MedianBlur(kernel_size=(3, 5))(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    param_names: ClassVar[tuple[str, ...]] = ("kernel_size",)

    def __init__(self, kernel_size: int | Sequence[int] = (3, 5)) -> None:
        super().__init__()
        self.kernel_size = check_int_range(
            "MedianBlur", "kernel_size", kernel_size, minimum=1, odd=True
        )

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> AttackParams:
        return {"kernel_size": odd_integers(batch_size, self.kernel_size, generator, device)}

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return median_blur(x, params["kernel_size"])

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"kernel_size={self.kernel_size}"
