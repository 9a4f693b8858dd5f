"""Snapshot of ``invprotect.attacks``'s public names: removing one must be deliberate."""

from __future__ import annotations

import inspect

import invprotect.attacks

PUBLIC = [
    "Attack",
    "AttackFactory",
    "AttackLayer",
    "AttackParams",
    "AttackResult",
    "CHROMA_TABLE",
    "DEFAULT_ATTACKS",
    "GaussianBlur",
    "GaussianNoise",
    "GradientKind",
    "IdentityAttack",
    "JPEGMask",
    "JPEGSS",
    "JPEGSTE",
    "JPEG_METHODS",
    "KorniaJPEG",
    "LUMA_TABLE",
    "MedianBlur",
    "PSEUDO_JPEG_WEIGHTS",
    "PseudoJPEG",
    "QuantizeSTE",
    "RandomCrop",
    "Resize",
    "Rounding",
    "create_attack",
    "dct_matrix",
    "gaussian_blur",
    "gaussian_noise",
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


def test_public_names_are_exactly_the_snapshot() -> None:
    assert sorted(invprotect.attacks.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(invprotect.attacks, name), name


def test_every_public_function_and_class_has_a_docstring() -> None:
    for name in PUBLIC:
        obj = getattr(invprotect.attacks, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert (obj.__doc__ or "").strip(), name
