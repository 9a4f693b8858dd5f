"""Geometric attacks: down-and-up rescaling and random crop resized back (kornia.geometry)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from kornia.geometry.transform import crop_and_resize
from kornia.geometry.transform import resize as kornia_resize
from torch import Tensor

from invprotect.attacks._checks import apply_grouped, check_range, image_op, per_sample, uniform
from invprotect.attacks.base import Attack, AttackParams, register_attack


@image_op("resize")
def resize(x: Tensor, scale: Tensor | float, interpolation: str = "bilinear") -> Tensor:
    """Rescale each sample by ``scale`` and back to its original size.

    Sample ``i`` is resized to ``(max(1, round(scale[i] H)), max(1, round(scale[i] W)))``
    and then back to ``(H, W)`` with `kornia.geometry.transform.resize`
    (``align_corners=False``, Gaussian anti-aliasing when shrinking), so the output keeps
    the input's shape. Samples with equal intermediate sizes go through one call. A
    scale below 1 loses detail; a scale above 1 is nearly lossless.

    Args:
        x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
        scale: Scale factor per sample ``(B,)`` or one number, ``> 0``.
        interpolation: ``"bilinear"``, ``"bicubic"``, ``"nearest"`` or ``"area"``.

    Returns:
        The rescaled images, same shape, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a scale is not positive.

    Example:
        >>> resize(torch.rand(2, 3, 32, 32), torch.tensor([0.5, 0.75])).shape
        torch.Size([2, 3, 32, 32])
    """
    scale = per_sample(scale, x, "resize", "scale")
    if bool(torch.any(scale <= 0)):
        raise ValueError(f"resize: scale must be > 0; received {scale.tolist()}")
    height, width = x.shape[-2:]
    sizes = torch.stack(
        (
            torch.round(scale.double() * height).clamp_min(1),
            torch.round(scale.double() * width).clamp_min(1),
        ),
        dim=1,
    ).long()
    sizes = sizes.cpu()

    def down_and_up(part: Tensor, index: Tensor) -> Tensor:
        small_h, small_w = (int(v) for v in sizes[int(index[0])])
        small = kornia_resize(part, (small_h, small_w), interpolation, antialias=True)
        return kornia_resize(small, (height, width), interpolation, antialias=True)

    return apply_grouped(x, sizes, down_and_up)


@image_op("random_crop")
def random_crop(
    x: Tensor,
    height: Tensor | float,
    width: Tensor | float,
    top: Tensor | float,
    left: Tensor | float,
) -> Tensor:
    """Crop a window of each sample and resize it back to the full size.

    All four parameters are fractions in ``[0, 1]``, so one set of parameters applies to
    any image size. The window of sample ``i`` has ``h = clamp(round(height[i] H), 1, H)``
    rows starting at row ``round(top[i] (H - h))``, and likewise for the columns with
    ``width`` and ``left``. It is cut out and resized back to ``(H, W)`` by bilinear
    sampling (`kornia.geometry.transform.crop_and_resize`, ``align_corners=True``),
    which zooms in: the output keeps the input's shape and no padding is added. A
    full-size window returns the input unchanged.

    Args:
        x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
        height: Window height as a fraction of ``H``, per sample ``(B,)`` or one number.
        width: Window width as a fraction of ``W``, per sample or one number.
        top: Position of the window in the free rows, ``0`` top, ``1`` bottom.
        left: Position of the window in the free columns, ``0`` left, ``1`` right.

    Returns:
        The zoomed-in crops, same shape as ``x``, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a fraction leaves ``[0, 1]`` (``height`` and ``width`` must be > 0).

    Example:
        >>> x = torch.rand(1, 3, 8, 8)
        >>> torch.allclose(random_crop(x, 1.0, 1.0, 0.0, 0.0), x, atol=1e-6)
        True
    """
    fractions = {
        name: per_sample(value, x, "random_crop", name)
        for name, value in (("height", height), ("width", width), ("top", top), ("left", left))
    }
    for name, value in fractions.items():
        low_ok = value > 0 if name in ("height", "width") else value >= 0
        if not bool(torch.all(low_ok & (value <= 1))):
            raise ValueError(
                f"random_crop: {name} must be a fraction in "
                f"{'(0, 1]' if name in ('height', 'width') else '[0, 1]'}; "
                f"received {value.tolist()}"
            )
    full_h, full_w = x.shape[-2:]
    crop_h = torch.round(fractions["height"] * full_h).clamp(1, full_h)
    crop_w = torch.round(fractions["width"] * full_w).clamp(1, full_w)
    y0 = torch.round(fractions["top"] * (full_h - crop_h))
    x0 = torch.round(fractions["left"] * (full_w - crop_w))
    y1 = y0 + crop_h - 1
    x1 = x0 + crop_w - 1
    boxes = torch.stack(
        (
            torch.stack((x0, y0), dim=1),
            torch.stack((x1, y0), dim=1),
            torch.stack((x1, y1), dim=1),
            torch.stack((x0, y1), dim=1),
        ),
        dim=1,
    )
    return crop_and_resize(x, boxes, (full_h, full_w), mode="bilinear", align_corners=True)


@register_attack("resize")
class Resize(Attack):
    """Down-and-up rescaling with a per-sample scale factor; output keeps the input size.

    Parameter per sample: ``scale`` ``(B,)``, drawn uniformly from ``scale``. See
    `resize`. At 32x32, a factor of 0.5 is already very destructive; the paper's
    "scaling" attack is this operation at 256x256.

    Args:
        scale: Scale factor, a number or a range ``(low, high)`` with ``0 < low <= high``.
        interpolation: Interpolation of both steps (see `resize`).

    Raises:
        ValueError: If the range or the interpolation is invalid.

    Example:
        >>> Resize(scale=(0.5, 1.0))(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    param_names: ClassVar[tuple[str, ...]] = ("scale",)

    def __init__(
        self, scale: float | Sequence[float] = (0.5, 1.0), interpolation: str = "bilinear"
    ) -> None:
        super().__init__()
        self.scale = check_range("Resize", "scale", scale, minimum=0.0, open_minimum=True)
        if interpolation not in ("bilinear", "bicubic", "nearest", "area"):
            raise ValueError(
                "Resize: interpolation must be 'bilinear', 'bicubic', 'nearest' or 'area'; "
                f"received {interpolation!r}"
            )
        self.interpolation = interpolation

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> AttackParams:
        return {"scale": uniform(batch_size, self.scale, generator, device)}

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return resize(x, params["scale"], self.interpolation)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"scale={self.scale}, interpolation={self.interpolation!r}"


@register_attack("random_crop")
class RandomCrop(Attack):
    """Random crop resized back to the full size (zoom in; no padding), per sample.

    Parameters per sample, all fractions (see `random_crop`): ``height`` and
    ``width`` drawn independently from ``fraction``, ``top`` and ``left`` uniform in
    ``[0, 1]``. The output keeps the input's shape.

    Args:
        fraction: Side of the window as a fraction of the image side, a number or a range
            ``(low, high)`` with ``0 < low <= high <= 1``.

    Raises:
        ValueError: If the range is invalid.

    Example:
        >>> RandomCrop(fraction=(0.7, 1.0))(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    param_names: ClassVar[tuple[str, ...]] = ("height", "width", "top", "left")

    def __init__(self, fraction: float | Sequence[float] = (0.7, 1.0)) -> None:
        super().__init__()
        self.fraction = check_range(
            "RandomCrop", "fraction", fraction, minimum=0.0, maximum=1.0, open_minimum=True
        )

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> AttackParams:
        return {
            "height": uniform(batch_size, self.fraction, generator, device),
            "width": uniform(batch_size, self.fraction, generator, device),
            "top": uniform(batch_size, (0.0, 1.0), generator, device),
            "left": uniform(batch_size, (0.0, 1.0), generator, device),
        }

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return random_crop(x, params["height"], params["width"], params["top"], params["left"])

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"fraction={self.fraction}"
