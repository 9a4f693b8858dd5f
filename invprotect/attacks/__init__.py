"""Differentiable attack layers the protector trains through.

Every attack exists as a functional op (``gaussian_blur(x, sigma, kernel_size)``) and as an
`Attack` module registered by name (``create_attack("gaussian_blur")``) whose random
parameters are drawn per sample by `Attack.sample_params` and can be replayed.
`AttackLayer` applies one randomly chosen attack per sample and records what it did.
Images are ``(B, C, H, W)``, float in ``[0, 1]``; outputs keep shape and dtype and are
clamped to ``[0, 1]``.
"""

from invprotect.attacks.base import Attack, AttackParams, GradientKind
from invprotect.attacks.filters import GaussianBlur, MedianBlur, gaussian_blur, median_blur
from invprotect.attacks.geometry import RandomCrop, Resize, random_crop, resize
from invprotect.attacks.jpeg import (
    CHROMA_TABLE,
    JPEG_METHODS,
    JPEGSS,
    JPEGSTE,
    LUMA_TABLE,
    PSEUDO_JPEG_WEIGHTS,
    JPEGMask,
    KorniaJPEG,
    PseudoJPEG,
    Rounding,
    dct_matrix,
    jpeg_kornia,
    jpeg_mask,
    jpeg_ss,
    jpeg_ste,
    pseudo_jpeg,
    quality_tables,
    real_jpeg,
)
from invprotect.attacks.layer import DEFAULT_ATTACKS, AttackLayer, AttackResult
from invprotect.attacks.pixel import (
    GaussianNoise,
    Grayscale,
    IdentityAttack,
    QuantizeSTE,
    gaussian_noise,
    grayscale,
    identity,
    quantize_ste,
)
from invprotect.attacks.registry import (
    AttackFactory,
    create_attack,
    is_attack,
    list_attacks,
    register_attack,
)

__all__ = [
    "CHROMA_TABLE",
    "DEFAULT_ATTACKS",
    "JPEGSS",
    "JPEGSTE",
    "JPEG_METHODS",
    "LUMA_TABLE",
    "PSEUDO_JPEG_WEIGHTS",
    "Attack",
    "AttackFactory",
    "AttackLayer",
    "AttackParams",
    "AttackResult",
    "GaussianBlur",
    "GaussianNoise",
    "GradientKind",
    "Grayscale",
    "IdentityAttack",
    "JPEGMask",
    "KorniaJPEG",
    "MedianBlur",
    "PseudoJPEG",
    "QuantizeSTE",
    "RandomCrop",
    "Resize",
    "Rounding",
    "create_attack",
    "dct_matrix",
    "gaussian_blur",
    "gaussian_noise",
    "grayscale",
    "identity",
    "is_attack",
    "jpeg_kornia",
    "jpeg_mask",
    "jpeg_ss",
    "jpeg_ste",
    "list_attacks",
    "median_blur",
    "pseudo_jpeg",
    "quality_tables",
    "quantize_ste",
    "random_crop",
    "real_jpeg",
    "register_attack",
    "resize",
]
