r"""JPEG attacks: several simulations, because one fixed simulation over-fits.

* `jpeg_kornia` -- kornia's differentiable JPEG codec (Reich et al., WACV 2024).
* `jpeg_mask` -- HiDDeN's JPEG-Mask (Zhu et al., ECCV 2018): zero the high
  frequencies of every 8x8 DCT block. No quality factor.
* `jpeg_ss` -- JPEG-SS (Liu et al., "JPEG robust invertible grayscale", TVCG 2021):
  8x8 DCT, quantisation by the standard tables scaled by the quality factor with a
  cubic approximation of rounding, 4:2:0 chroma subsampling by average pooling.
* `jpeg_ste` -- real libjpeg (``torchvision.io``) in the forward pass and a
  straight-through backward pass, as in MBRS (Jia et al., ACM MM 2021).
* `pseudo_jpeg` -- the RAEG paper's Eq. (3), a fixed convex combination of the above.

All take RGB images ``(B, 3, H, W)`` in ``[0, 1]`` of any size (padded internally by
edge replication and cropped back) and return the same shape and dtype, clamped to
``[0, 1]``. Quality factors follow libjpeg: an integer in ``[1, 100]`` scales the
standard tables of the JPEG specification (Annex K) by ``5000 / q`` below 50 and
``200 - 2 q`` from 50, each entry ``floor((t s + 50) / 100)`` clipped to ``[1, 255]``.
Colour conversion is JFIF's full-range BT.601 YCbCr (`kornia.color.rgb_to_ycbcr`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import kornia
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from invprotect.attacks._checks import (
    check_images,
    check_int_range,
    check_weights,
    clamp_unit,
    image_op,
    integers,
    per_sample,
)
from invprotect.attacks.base import ATTACKS, Attack, AttackParams, GradientKind, register_attack

LUMA_TABLE: tuple[tuple[int, ...], ...] = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
"""Standard luminance quantisation table (JPEG specification, Annex K.1), row-major."""

CHROMA_TABLE: tuple[tuple[int, ...], ...] = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)
"""Standard chrominance quantisation table (JPEG specification, Annex K.2), row-major."""

PSEUDO_JPEG_WEIGHTS: dict[str, float] = {"jpeg_ss": 1.0, "jpeg_mask": 1.0, "jpeg_ste": 1.0}
"""Default weights of `pseudo_jpeg`: the paper's three methods, equally (normalised)."""

Rounding = Literal["cubic", "cubic-near-zero"]
"""How `jpeg_ss` approximates the rounding of quantised coefficients.

* ``"cubic"``: ``round(z) + (z - round(z)) ** 3`` (Shin & Song 2017): close to rounding
  everywhere, derivative ``3 (z - round(z)) ** 2``.
* ``"cubic-near-zero"``: ``z ** 3`` where ``|z| < 0.5``, ``z`` elsewhere: the form used by
  MBRS's ``JpegSS``; it removes the small coefficients (JPEG's main loss) but does not
  round the others, so it is a milder attack.
"""

_ROUNDINGS: tuple[str, ...] = ("cubic", "cubic-near-zero")


# --------------------------------------------------------------------------- building blocks


def dct_matrix(dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
    r"""The orthonormal 8-point DCT-II matrix ``D`` (the DCT of an 8x8 block is ``D B D^T``).

    ``D[k, n] = c_k cos(pi (2 n + 1) k / 16)`` with ``c_0 = sqrt(1/8)`` and ``c_k = 1/2``,
    which is the JPEG specification's forward DCT.

    Args:
        dtype: Floating dtype of the result.
        device: Device of the result.

    Returns:
        Tensor ``(8, 8)``.

    Example:
        >>> d = dct_matrix(torch.float64)
        >>> torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64))
        True
    """
    k = torch.arange(8, dtype=torch.float64).unsqueeze(1)
    n = torch.arange(8, dtype=torch.float64).unsqueeze(0)
    matrix = torch.cos(math.pi * (2 * n + 1) * k / 16) * 0.5
    matrix[0] = math.sqrt(1 / 8)
    return matrix.to(dtype=dtype, device=device)


def quality_tables(quality: Tensor, table: Tensor) -> Tensor:
    """Scale a base quantisation table by per-sample quality factors, as libjpeg does.

    ``s = 5000 / q`` for ``q < 50`` else ``200 - 2 q`` (``floor`` of it, as integers), then
    ``floor((table s + 50) / 100)`` clipped to ``[1, 255]``. Integer qualities give
    libjpeg's tables exactly.

    Args:
        quality: Quality factors ``(B,)`` in ``[1, 100]``.
        table: Base table ``(8, 8)``.

    Returns:
        Tables ``(B, 8, 8)`` in ``table``'s dtype.

    Example:
        >>> base = torch.tensor(LUMA_TABLE, dtype=torch.float32)
        >>> quality_tables(torch.tensor([50.0, 100.0]), base)[:, 0, 0].tolist()
        [16.0, 1.0]
    """
    quality = quality.to(table.dtype).clamp(1, 100)
    scale = torch.where(quality < 50, torch.floor(5000 / quality), 200 - 2 * quality)
    scaled = torch.floor((table.unsqueeze(0) * scale.view(-1, 1, 1) + 50) / 100)
    return scaled.clamp(1, 255)


def _pad_to(x: Tensor, multiple: int) -> Tensor:
    pad_h = -x.shape[-2] % multiple
    pad_w = -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def _blocks(plane: Tensor) -> Tensor:
    """``(B, H, W) -> (B, H/8, W/8, 8, 8)``."""
    batch, height, width = plane.shape
    return plane.reshape(batch, height // 8, 8, width // 8, 8).transpose(2, 3)


def _unblocks(blocks: Tensor) -> Tensor:
    """``(B, H/8, W/8, 8, 8) -> (B, H, W)``."""
    batch, rows, cols = blocks.shape[:3]
    return blocks.transpose(2, 3).reshape(batch, rows * 8, cols * 8)


def _dct(plane: Tensor, matrix: Tensor) -> Tensor:
    return matrix @ _blocks(plane) @ matrix.T


def _idct(coefficients: Tensor, matrix: Tensor) -> Tensor:
    return _unblocks(matrix.T @ coefficients @ matrix)


def _round_cubic(z: Tensor) -> Tensor:
    rounded = torch.round(z).detach()
    return rounded + (z - rounded) ** 3


def _round_cubic_near_zero(z: Tensor) -> Tensor:
    return torch.where(z.abs() < 0.5, z**3, z)


def _check_quality(quality: Tensor, owner: str) -> Tensor:
    if bool(torch.any((quality < 1) | (quality > 100))):
        raise ValueError(f"{owner}: quality must be in [1, 100]; received {quality.tolist()}")
    return quality


# --------------------------------------------------------------------------- JPEG-SS


def _jpeg_ss(
    x: Tensor,
    quality: Tensor,
    luma: Tensor,
    chroma: Tensor,
    matrix: Tensor,
    rounding: str,
) -> Tensor:
    height, width = x.shape[-2:]
    padded = _pad_to(x, 16)
    ycbcr = kornia.color.rgb_to_ycbcr(padded) * 255 - 128
    y_plane = ycbcr[:, 0]
    chroma_planes = F.avg_pool2d(ycbcr[:, 1:], 2)
    round_fn = _round_cubic if rounding == "cubic" else _round_cubic_near_zero
    tables_y = quality_tables(quality, luma).view(-1, 1, 1, 8, 8)
    tables_c = quality_tables(quality, chroma).view(-1, 1, 1, 8, 8)

    def code(plane: Tensor, table: Tensor) -> Tensor:
        coefficients = _dct(plane, matrix)
        return _idct(round_fn(coefficients / table) * table, matrix)

    y_out = code(y_plane, tables_y)
    cb_out = code(chroma_planes[:, 0], tables_c)
    cr_out = code(chroma_planes[:, 1], tables_c)
    chroma_out = torch.stack((cb_out, cr_out), dim=1)
    chroma_out = F.interpolate(chroma_out, scale_factor=2, mode="bilinear", align_corners=False)
    out = torch.cat((y_out.unsqueeze(1), chroma_out), dim=1)
    rgb = kornia.color.ycbcr_to_rgb((out + 128) / 255)
    return rgb[..., :height, :width]


@image_op("jpeg_ss", rgb=True)
def jpeg_ss(x: Tensor, quality: Tensor | float, rounding: Rounding = "cubic") -> Tensor:
    r"""JPEG-SS: a differentiable JPEG simulation (Liu et al., TVCG 2021).

    Steps: pad to a multiple of 16 (edge replication); RGB to YCbCr in ``[0, 255]``,
    level-shifted by -128; 4:2:0 chroma subsampling by 2x2 average pooling; orthonormal
    DCT of 8x8 blocks; division by the quality-scaled standard tables
    (`quality_tables`); a smooth approximation of rounding (see `Rounding`;
    default ``round(z) + (z - round(z))^3``); de-quantisation; inverse DCT; chroma
    upsampling by bilinear interpolation (``align_corners=False``, libjpeg's "fancy"
    upsampling); YCbCr to RGB; crop. Entropy coding is lossless and omitted; the decoded
    image is not rounded to 8 bits.

    The backward pass is the derivative of this smooth stand-in (a surrogate gradient).
    The quality factor is not differentiated.

    Args:
        x: RGB images ``(B, 3, H, W)``, float in ``[0, 1]``.
        quality: Quality factor per sample ``(B,)`` or one number, in ``[1, 100]``.
        rounding: ``"cubic"`` or ``"cubic-near-zero"`` (see `Rounding`).

    Returns:
        The simulated JPEG images, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a quality leaves ``[1, 100]`` or ``rounding`` is unknown.

    Example:
        >>> jpeg_ss(torch.rand(2, 3, 20, 24), torch.tensor([50, 90])).shape
        torch.Size([2, 3, 20, 24])
    """
    if rounding not in _ROUNDINGS:
        raise ValueError(f"jpeg_ss: rounding must be one of {_ROUNDINGS}; received {rounding!r}")
    quality = _check_quality(per_sample(quality, x, "jpeg_ss", "quality"), "jpeg_ss")
    luma = torch.tensor(LUMA_TABLE, dtype=x.dtype, device=x.device)
    chroma = torch.tensor(CHROMA_TABLE, dtype=x.dtype, device=x.device)
    return _jpeg_ss(x, quality, luma, chroma, dct_matrix(x.dtype, x.device), rounding)


# --------------------------------------------------------------------------- JPEG-Mask


def _coefficient_mask(keep_luma: int, keep_chroma: int) -> Tensor:
    mask = torch.zeros(3, 8, 8)
    mask[0, :keep_luma, :keep_luma] = 1
    mask[1:, :keep_chroma, :keep_chroma] = 1
    return mask


def _jpeg_mask(x: Tensor, mask: Tensor, matrix: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    padded = _pad_to(x, 8)
    ycbcr = kornia.color.rgb_to_ycbcr(padded) * 255
    batch, channels, full_h, full_w = ycbcr.shape
    planes = ycbcr.reshape(batch * channels, full_h, full_w)
    coefficients = _dct(planes, matrix).reshape(batch, channels, full_h // 8, full_w // 8, 8, 8)
    kept = (coefficients * mask.view(1, 3, 1, 1, 8, 8)).reshape(
        batch * channels, full_h // 8, full_w // 8, 8, 8
    )
    out = _idct(kept, matrix).reshape(batch, channels, full_h, full_w)
    return kornia.color.ycbcr_to_rgb(out / 255)[..., :height, :width]


@image_op("jpeg_mask", rgb=True)
def jpeg_mask(x: Tensor, keep_luma: int = 5, keep_chroma: int = 3) -> Tensor:
    """JPEG-Mask (HiDDeN, Zhu et al. 2018): keep only the low DCT frequencies of 8x8 blocks.

    RGB to YCbCr, orthonormal DCT of every 8x8 block of each channel (full resolution,
    no chroma subsampling, as in HiDDeN), keep the top-left ``keep_luma x keep_luma``
    coefficients of Y and ``keep_chroma x keep_chroma`` of Cb and Cr, zero the rest,
    inverse DCT, back to RGB. The images are padded to a multiple of 8 by edge
    replication and cropped back. It is linear in ``x`` (before the clamp) and has no
    quality factor: in `pseudo_jpeg` it ignores the sampled quality.

    Args:
        x: RGB images ``(B, 3, H, W)``, float in ``[0, 1]``.
        keep_luma: Side of the kept square of Y coefficients, 1 to 8.
        keep_chroma: Side of the kept square of Cb/Cr coefficients, 1 to 8.

    Returns:
        The low-pass images, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a side is not an int in ``[1, 8]``.

    Example:
        >>> x = torch.rand(1, 3, 16, 16)
        >>> torch.allclose(jpeg_mask(x, keep_luma=8, keep_chroma=8), x, atol=1e-5)
        True
    """
    _check_keep(keep_luma, keep_chroma, "jpeg_mask")
    mask = _coefficient_mask(keep_luma, keep_chroma).to(dtype=x.dtype, device=x.device)
    return _jpeg_mask(x, mask, dct_matrix(x.dtype, x.device))


def _check_keep(keep_luma: int, keep_chroma: int, owner: str) -> None:
    for name, value in (("keep_luma", keep_luma), ("keep_chroma", keep_chroma)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 8:
            raise ValueError(f"{owner}: {name} must be an int in [1, 8]; received {value!r}")


# --------------------------------------------------------------------------- kornia


@image_op("jpeg_kornia", rgb=True)
def jpeg_kornia(x: Tensor, quality: Tensor | float) -> Tensor:
    """Kornia's differentiable JPEG (`kornia.enhance.jpeg_codec_differentiable`).

    The codec of Reich et al. (WACV 2024): 4:2:0 chroma subsampling, the standard tables
    scaled by the quality factor, polynomial approximations of rounding, flooring and
    clipping. The quality factor is not differentiated here.

    Args:
        x: RGB images ``(B, 3, H, W)``, float in ``[0, 1]``.
        quality: Quality factor per sample ``(B,)`` or one number, in ``[1, 100]``.

    Returns:
        The simulated JPEG images, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a quality leaves ``[1, 100]``.

    Example:
        >>> jpeg_kornia(torch.rand(2, 3, 16, 16), 75).shape
        torch.Size([2, 3, 16, 16])
    """
    quality = _check_quality(per_sample(quality, x, "jpeg_kornia", "quality"), "jpeg_kornia")
    return kornia.enhance.jpeg_codec_differentiable(x, quality.contiguous())


# --------------------------------------------------------------------------- real JPEG


def real_jpeg(x: Tensor, quality: Tensor | int) -> Tensor:
    """Real JPEG with libjpeg (``torchvision.io.encode_jpeg``/``decode_jpeg``), no gradient.

    Each image is clamped, rounded to 8 bits, encoded on the CPU at its own quality
    (libjpeg's defaults: 4:2:0 chroma subsampling, standard tables), decoded and returned
    as float in ``[0, 1]`` on ``x``'s device and dtype. This is the reference the
    simulations are compared with.

    Args:
        x: RGB images ``(B, 3, H, W)``, float in ``[0, 1]``.
        quality: Integer quality per sample ``(B,)`` or one int, in ``[1, 100]``.

    Returns:
        The decoded images (no autograd graph).

    Raises:
        ValueError: If ``x`` is not an RGB batch or a quality leaves ``[1, 100]``.

    Example:
        >>> y = real_jpeg(torch.rand(2, 3, 16, 16), 50)
        >>> bool(torch.all(y * 255 == torch.round(y * 255)))
        True
    """
    check_images("real_jpeg", x, rgb=True)
    qualities = torch.as_tensor(quality).detach().reshape(-1).cpu()
    if qualities.numel() == 1:
        qualities = qualities.expand(x.shape[0])
    if qualities.shape != (x.shape[0],):
        raise ValueError(
            f"real_jpeg: quality must be an int or a tensor of shape ({x.shape[0]},); "
            f"received shape {tuple(qualities.shape)}"
        )
    from torchvision.io import decode_jpeg, encode_jpeg  # imported on use: it takes seconds

    _check_quality(qualities, "real_jpeg")
    with torch.no_grad():
        pixels = torch.round(x.detach().clamp(0, 1) * 255).to("cpu", torch.uint8)
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its codecs in favour of TorchCodec, which is not a
            # dependency; the codecs still work, and the warning would repeat for every batch.
            warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
            decoded = [
                decode_jpeg(encode_jpeg(image, quality=round(float(q))))
                for image, q in zip(pixels, qualities.tolist(), strict=True)
            ]
        out = torch.stack(decoded) if decoded else pixels
    return out.to(device=x.device, dtype=x.dtype) / 255


@image_op("jpeg_ste", rgb=True)
def jpeg_ste(x: Tensor, quality: Tensor | int) -> Tensor:
    """Real JPEG forward, straight-through backward (MBRS-style).

    Forward: `real_jpeg` (libjpeg through ``torchvision.io``, each image at its own
    integer quality, on the CPU). Backward: straight-through estimator, the codec is
    treated as the identity (the clamp of the input to ``[0, 1]`` keeps its gradient).

    Args:
        x: RGB images ``(B, 3, H, W)``, float in ``[0, 1]``.
        quality: Integer quality per sample ``(B,)`` or one int, in ``[1, 100]``.

    Returns:
        The really compressed images, with a straight-through gradient.

    Raises:
        ValueError: If a quality leaves ``[1, 100]``.

    Example:
        >>> x = torch.rand(1, 3, 16, 16, requires_grad=True)
        >>> jpeg_ste(x, 50).sum().backward()
        >>> bool(torch.all(x.grad == 1))
        True
    """
    clamped = clamp_unit(x)
    # Written so that the forward value is exactly the decoded image (no round-off).
    return real_jpeg(clamped, quality) + (clamped - clamped.detach())


# --------------------------------------------------------------------------- pseudo-JPEG


@image_op("pseudo_jpeg", rgb=True)
def pseudo_jpeg(
    x: Tensor, quality: Tensor | float, weights: Mapping[str, float] | None = None
) -> Tensor:
    r"""Pseudo-JPEG, the RAEG paper's Eq. (3): a convex combination of JPEG attacks.

    ``I_{jpg} = \sum_k \epsilon_k J_k(I, QF)`` with ``\sum_k \epsilon_k = 1``,
    where the ``J_k`` are the JPEG attacks named in ``weights`` (any of
    `JPEG_METHODS`; default `PSEUDO_JPEG_WEIGHTS`, the paper's JPEG-SS,
    JPEG-Mask and MBRS-style real JPEG with a straight-through gradient, equally
    weighted) and the quality factor of each sample is shared by all methods
    (JPEG-Mask ignores it). Weights are normalised to sum to 1; methods of weight 0 are
    not run. The gradient is the same combination of the methods' gradients.

    Args:
        x: RGB images ``(B, 3, H, W)``, float in ``[0, 1]``.
        quality: Integer quality per sample ``(B,)`` or one number, in ``[1, 100]``.
        weights: Mapping method name -> non-negative weight.

    Returns:
        The mixed images, clamped to ``[0, 1]``.

    Raises:
        ValueError: If a method name is unknown, the weights are invalid or a quality
            leaves ``[1, 100]``.

    Example:
        >>> pseudo_jpeg(torch.rand(2, 3, 16, 16), torch.tensor([10, 100])).shape
        torch.Size([2, 3, 16, 16])
    """
    normalised = _check_methods(PSEUDO_JPEG_WEIGHTS if weights is None else weights, "pseudo_jpeg")
    functions = {
        "jpeg_kornia": jpeg_kornia,
        "jpeg_ss": jpeg_ss,
        "jpeg_ste": jpeg_ste,
    }
    outputs = [
        weight * (jpeg_mask(x) if name == "jpeg_mask" else functions[name](x, quality))
        for name, weight in normalised.items()
        if weight > 0
    ]
    return torch.stack(outputs).sum(0)


def _check_methods(weights: Mapping[str, float], owner: str) -> dict[str, float]:
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(JPEG_METHODS))
        if unknown:
            raise ValueError(
                f"{owner}: expected JPEG methods among {JPEG_METHODS}; received unknown {unknown}"
            )
    return check_weights(owner, weights)


# --------------------------------------------------------------------------- modules


class _QualityAttack(Attack):
    """An attack with one integer quality factor per sample, drawn from a range."""

    param_names: ClassVar[tuple[str, ...]] = ("quality",)
    rgb_only: ClassVar[bool] = True

    def __init__(self, quality: int | Sequence[int] = (10, 100)) -> None:
        super().__init__()
        self.quality = check_int_range(
            type(self).__name__, "quality", quality, minimum=1, maximum=100
        )

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> AttackParams:
        return {"quality": integers(batch_size, self.quality, generator, device)}

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"quality={self.quality}"


@register_attack("jpeg_kornia", tags=("jpeg_method",))
class KorniaJPEG(_QualityAttack):
    """Kornia's differentiable JPEG with a per-sample quality factor (``jpeg_kornia``).

    Parameter per sample: ``quality`` ``(B,)`` (int64), uniform over the integers of
    ``quality``. The standard tables are buffers. See `jpeg_kornia`.

    Args:
        quality: Quality factor, an int or a range ``(low, high)`` inside ``[1, 100]``.

    Raises:
        ValueError: If the range is invalid.

    Example:
        >>> KorniaJPEG(quality=(50, 90))(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    gradient: ClassVar[GradientKind] = "surrogate"

    def __init__(self, quality: int | Sequence[int] = (10, 100)) -> None:
        super().__init__(quality)
        self.register_buffer("luma_table", torch.tensor(LUMA_TABLE, dtype=torch.float32), False)
        self.register_buffer("chroma_table", torch.tensor(CHROMA_TABLE, dtype=torch.float32), False)

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return _kornia_with_tables(x, params["quality"], self.luma_table, self.chroma_table)


@image_op("jpeg_kornia", rgb=True)
def _kornia_with_tables(x: Tensor, quality: Tensor, luma: Tensor, chroma: Tensor) -> Tensor:
    quality = _check_quality(per_sample(quality, x, "jpeg_kornia", "quality"), "jpeg_kornia")
    return kornia.enhance.jpeg_codec_differentiable(
        x, quality.contiguous(), luma.to(x), chroma.to(x)
    )


@register_attack("jpeg_ss", tags=("jpeg_method",))
class JPEGSS(_QualityAttack):
    """JPEG-SS (Liu et al., TVCG 2021) with a per-sample quality factor (``jpeg_ss``).

    Parameter per sample: ``quality`` ``(B,)`` (int64), uniform over the integers of
    ``quality``. The standard tables and the DCT matrix are buffers. See `jpeg_ss`.

    Args:
        quality: Quality factor, an int or a range ``(low, high)`` inside ``[1, 100]``.
        rounding: Approximation of rounding, ``"cubic"`` or ``"cubic-near-zero"``
            (see `Rounding`).

    Raises:
        ValueError: If the range or ``rounding`` is invalid.

    Example:
        >>> JPEGSS(quality=(50, 90))(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    gradient: ClassVar[GradientKind] = "surrogate"

    def __init__(
        self, quality: int | Sequence[int] = (10, 100), rounding: Rounding = "cubic"
    ) -> None:
        super().__init__(quality)
        if rounding not in _ROUNDINGS:
            raise ValueError(f"JPEGSS: rounding must be one of {_ROUNDINGS}; received {rounding!r}")
        self.rounding = rounding
        self.register_buffer("luma_table", torch.tensor(LUMA_TABLE, dtype=torch.float32), False)
        self.register_buffer("chroma_table", torch.tensor(CHROMA_TABLE, dtype=torch.float32), False)
        self.register_buffer("dct", dct_matrix(torch.float32), False)

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return _jpeg_ss_module(
            x, params["quality"], self.luma_table, self.chroma_table, self.dct, self.rounding
        )

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"quality={self.quality}, rounding={self.rounding!r}"


@image_op("jpeg_ss", rgb=True)
def _jpeg_ss_module(
    x: Tensor, quality: Tensor, luma: Tensor, chroma: Tensor, matrix: Tensor, rounding: str
) -> Tensor:
    quality = _check_quality(per_sample(quality, x, "jpeg_ss", "quality"), "jpeg_ss")
    return _jpeg_ss(x, quality, luma.to(x), chroma.to(x), matrix.to(x), rounding)


@register_attack("jpeg_mask", tags=("jpeg_method",))
class JPEGMask(Attack):
    """HiDDeN's JPEG-Mask (``jpeg_mask``): keep the low 8x8-DCT frequencies only.

    No random parameters (JPEG-Mask has no quality factor). The coefficient mask and the
    DCT matrix are buffers. See `jpeg_mask`.

    Args:
        keep_luma: Side of the kept square of Y coefficients, 1 to 8.
        keep_chroma: Side of the kept square of Cb/Cr coefficients, 1 to 8.

    Raises:
        ValueError: If a side is not an int in ``[1, 8]``.

    Example:
        >>> JPEGMask()(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    rgb_only: ClassVar[bool] = True

    def __init__(self, keep_luma: int = 5, keep_chroma: int = 3) -> None:
        super().__init__()
        _check_keep(keep_luma, keep_chroma, "JPEGMask")
        self.keep_luma = keep_luma
        self.keep_chroma = keep_chroma
        self.register_buffer("mask", _coefficient_mask(keep_luma, keep_chroma), False)
        self.register_buffer("dct", dct_matrix(torch.float32), False)

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return _jpeg_mask_module(x, self.mask, self.dct)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"keep_luma={self.keep_luma}, keep_chroma={self.keep_chroma}"


@image_op("jpeg_mask", rgb=True)
def _jpeg_mask_module(x: Tensor, mask: Tensor, matrix: Tensor) -> Tensor:
    return _jpeg_mask(x, mask.to(x), matrix.to(x))


@register_attack("jpeg_ste", tags=("jpeg_method",))
class JPEGSTE(_QualityAttack):
    """Real libjpeg forward with a straight-through backward (``jpeg_ste``), as in MBRS.

    Parameter per sample: ``quality`` ``(B,)`` (int64), uniform over the integers of
    ``quality``. Forward: real JPEG at that quality (`real_jpeg`, on the CPU).
    Backward: straight-through estimator (identity). See `jpeg_ste`.

    Args:
        quality: Quality factor, an int or a range ``(low, high)`` inside ``[1, 100]``.

    Raises:
        ValueError: If the range is invalid.

    Example:
        >>> JPEGSTE(quality=50)(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    gradient: ClassVar[GradientKind] = "straight-through"

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return jpeg_ste(x, params["quality"])


@register_attack("pseudo_jpeg")
class PseudoJPEG(_QualityAttack):
    r"""Pseudo-JPEG (``pseudo_jpeg``), the RAEG paper's Eq. (3).

    ``I_{jpg} = \sum_k \epsilon_k J_k(I, QF)``: a fixed convex combination of JPEG
    attacks (the weights, normalised to sum 1) at a quality factor drawn per sample,
    uniformly over the integers of ``quality`` (the paper: 10 to 100) and shared by the
    methods. Parameter per sample: ``quality`` ``(B,)`` (int64). The member attacks are
    submodules (their tables are buffers). See `pseudo_jpeg`.

    Its gradient is the weighted sum of the members' gradients; with the default
    members it mixes surrogate (JPEG-SS), exact (JPEG-Mask) and straight-through (real
    JPEG) gradients.

    Args:
        weights: Mapping method name (among `JPEG_METHODS`) -> weight; default
            `PSEUDO_JPEG_WEIGHTS`.
        quality: Quality factor, an int or a range ``(low, high)`` inside ``[1, 100]``.

    Raises:
        ValueError: If a method is unknown, the weights are invalid or the range is invalid.

    Example:
        >>> attack = PseudoJPEG({"jpeg_ss": 2.0, "jpeg_mask": 1.0}, quality=(10, 100))
        >>> attack.weights
        {'jpeg_ss': 0.6666666666666666, 'jpeg_mask': 0.3333333333333333}
    """

    gradient: ClassVar[GradientKind] = "mixed"

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        quality: int | Sequence[int] = (10, 100),
    ) -> None:
        super().__init__(quality)
        self.weights = _check_methods(
            dict(PSEUDO_JPEG_WEIGHTS) if weights is None else dict(weights), "PseudoJPEG"
        )
        members: dict[str, Attack] = {
            "jpeg_kornia": KorniaJPEG(self.quality),
            "jpeg_mask": JPEGMask(),
            "jpeg_ss": JPEGSS(self.quality),
            "jpeg_ste": JPEGSTE(self.quality),
        }
        self.members = nn.ModuleDict(
            {name: members[name] for name, weight in self.weights.items() if weight > 0}
        )

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return _mix(x, params["quality"], self.members, self.weights)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"weights={self.weights}, quality={self.quality}"


@image_op("pseudo_jpeg", rgb=True)
def _mix(x: Tensor, quality: Tensor, members: nn.ModuleDict, weights: dict[str, float]) -> Tensor:
    outputs = []
    for name, member in members.items():
        member_params = {"quality": quality} if member.param_names else {}
        outputs.append(weights[name] * member(x, member_params))
    return torch.stack(outputs).sum(0)


JPEG_METHODS: tuple[str, ...] = tuple(ATTACKS.names(tag="jpeg_method"))
"""The JPEG attacks that `pseudo_jpeg` can mix, by registry name (those tagged
``jpeg_method``): ``jpeg_kornia``, ``jpeg_mask``, ``jpeg_ss`` and ``jpeg_ste``."""
