"""Point-wise attacks: identity, additive Gaussian noise, grayscale and 8-bit quantisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from invprotect.attacks._checks import check_range, clamp_unit, image_op, per_sample, uniform
from invprotect.attacks.base import Attack, AttackParams, GradientKind, register_attack

_SEED_HIGH = 2**62


LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G and B (what JPEG and PIL's ``convert("L")`` use)."""


@image_op("identity")
def identity(x: Tensor) -> Tensor:
    """Return the images unchanged (clamped to ``[0, 1]``).

    Args:
        x: Images ``(B, C, H, W)``, float in ``[0, 1]``.

    Returns:
        ``x`` clamped to ``[0, 1]``, same dtype.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> torch.equal(identity(x), x)
        True
    """
    return x


@image_op("grayscale", rgb=True)
def grayscale(x: Tensor) -> Tensor:
    r"""Replace each pixel by its luma, kept as three equal channels.

    ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, the weights of PIL's ``convert("L")``),
    the "grayscale squeezing" a thief uses to wash out colour perturbations.

    Args:
        x: RGB images ``(B, 3, H, W)``, float in ``[0, 1]``.

    Returns:
        ``(B, 3, H, W)`` with three equal channels, same dtype.

    Example:
        >>> y = grayscale(torch.rand(2, 3, 4, 4))
        >>> torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
        True
    """
    weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device)
    luma = torch.einsum("bchw,c->bhw", x, weights)
    return luma[:, None].expand_as(x).contiguous()


@image_op("gaussian_noise")
def gaussian_noise(x: Tensor, sigma: Tensor | float, seed: Tensor | int) -> Tensor:
    r"""Add white Gaussian noise: ``y = \mathrm{clamp}(x + \sigma n, 0, 1)``.

    The noise field ``n \sim \mathcal{N}(0, 1)`` of sample ``i`` is drawn by a
    `torch.Generator` on ``x``'s device seeded with ``seed[i]``, so the same seeds
    give the same noise (on the same device).

    Args:
        x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
        sigma: Standard deviation per sample ``(B,)`` or one number, in pixel units of
            ``[0, 1]``.
        seed: Noise seed per sample ``(B,)`` or one int (then all samples share a field).

    Returns:
        The noisy images, clamped to ``[0, 1]``.

    Example:
        >>> x = torch.full((2, 3, 8, 8), 0.5)
        >>> y = gaussian_noise(x, 0.1, torch.tensor([1, 2]))
        >>> torch.equal(y, gaussian_noise(x, 0.1, torch.tensor([1, 2])))
        True
    """
    sigma = per_sample(sigma, x, "gaussian_noise", "sigma")
    seeds = torch.as_tensor(seed, dtype=torch.long).reshape(-1).tolist()
    if len(seeds) == 1:
        seeds = seeds * x.shape[0]
    if len(seeds) != x.shape[0]:
        raise ValueError(
            f"gaussian_noise: seed must be an int or a tensor of shape ({x.shape[0]},); "
            f"received {len(seeds)} seeds"
        )
    noise = torch.empty_like(x)
    generator = torch.Generator(device=x.device)
    for index, value in enumerate(seeds):
        generator.manual_seed(int(value))
        noise[index] = torch.randn(x.shape[1:], generator=generator, device=x.device, dtype=x.dtype)
    return x + sigma.view(-1, 1, 1, 1) * noise


@image_op("quantize")
def quantize_ste(x: Tensor, levels: int = 256) -> Tensor:
    """Round to ``levels`` grey levels (8-bit by default) with a straight-through gradient.

    Forward: ``round(clamp(x, 0, 1) * (levels - 1)) / (levels - 1)``, what saving to an
    8-bit image file does. Backward: straight-through estimator, the rounding is treated as
    the identity (the clamp keeps its real gradient).

    Args:
        x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
        levels: Number of grey levels, at least 2.

    Returns:
        The quantised images.

    Raises:
        ValueError: If ``levels`` is not an int >= 2.

    Example:
        >>> x = torch.tensor([0.0, 0.1, 0.5, 1.0]).view(1, 1, 2, 2)
        >>> (quantize_ste(x) * 255).flatten().tolist()
        [0.0, 26.0, 128.0, 255.0]
    """
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 2:
        raise ValueError(f"quantize: levels must be an int >= 2; received {levels!r}")
    clamped = clamp_unit(x)
    steps = levels - 1
    rounded = torch.round(clamped * steps) / steps
    # Written so that the forward value is exactly the rounded image (no round-off).
    return rounded.detach() + (clamped - clamped.detach())


@register_attack("identity")
class IdentityAttack(Attack):
    """No attack: the images pass unchanged (clamped to ``[0, 1]``).

    Included in an `invprotect.attacks.AttackLayer` so that a share of the
    training samples sees no attack. No parameters.

    Example:
        >>> IdentityAttack()(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return identity(x)


@register_attack("grayscale")
class Grayscale(Attack):
    """Grayscale squeezing (registered as ``grayscale``): see `grayscale`. No parameters.

    Example:
        >>> Grayscale()(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    rgb_only: ClassVar[bool] = True

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return grayscale(x)


@register_attack("gaussian_noise")
class GaussianNoise(Attack):
    r"""Additive white Gaussian noise with a per-sample standard deviation.

    ``y = \mathrm{clamp}(x + \sigma n, 0, 1)``, ``n \sim \mathcal{N}(0, I)``,
    ``\sigma \sim U(\sigma_{lo}, \sigma_{hi})`` per sample. The parameters are
    ``sigma`` ``(B,)`` and the noise ``seed`` ``(B,)`` (int64), from which the noise field
    is regenerated on replay (see `gaussian_noise`).

    Args:
        sigma: Standard deviation in ``[0, 1]`` pixel units: a number or a range
            ``(low, high)`` with ``0 <= low <= high``.

    Raises:
        ValueError: If ``sigma`` is not a valid range.

    Example:
        >>> attack = GaussianNoise(sigma=(0.01, 0.05))
        >>> params = attack.sample_params(2, torch.Generator().manual_seed(0))
        >>> sorted(params)
        ['seed', 'sigma']
    """

    param_names: ClassVar[tuple[str, ...]] = ("sigma", "seed")

    def __init__(self, sigma: float | Sequence[float] = (0.0, 0.05)) -> None:
        super().__init__()
        self.sigma = check_range("GaussianNoise", "sigma", sigma, minimum=0.0)

    def _sample(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> AttackParams:
        sigma = uniform(batch_size, self.sigma, generator, device)
        seed = torch.randint(0, _SEED_HIGH, (batch_size,), generator=generator, device=device)
        return {"sigma": sigma, "seed": seed}

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return gaussian_noise(x, params["sigma"], params["seed"])

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"sigma={self.sigma}"


@register_attack("quantize")
class QuantizeSTE(Attack):
    """8-bit rounding with a straight-through gradient (registered as ``quantize``).

    Forward: what saving to an 8-bit image does, ``round(255 x) / 255``. Backward:
    straight-through, the rounding is treated as the identity; see `quantize_ste`.
    No random parameters.

    Args:
        levels: Number of grey levels (256 for 8 bits).

    Raises:
        ValueError: If ``levels`` is not an int >= 2.

    Example:
        >>> y = QuantizeSTE()(torch.rand(1, 3, 4, 4))
        >>> bool(torch.all(y * 255 == torch.round(y * 255)))
        True
    """

    gradient: ClassVar[GradientKind] = "straight-through"

    def __init__(self, levels: int = 256) -> None:
        super().__init__()
        if not isinstance(levels, int) or isinstance(levels, bool) or levels < 2:
            raise ValueError(f"QuantizeSTE: levels must be an int >= 2; received {levels!r}")
        self.levels = levels

    def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
        """See `Attack.apply_params`."""
        return quantize_ste(x, self.levels)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        return f"levels={self.levels}"
