"""Invalid hyper-parameters are refused at construction with the expected and received values."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from invprotect.attacks import AttackLayer, create_attack, list_attacks

INVALID = [
    ("gaussian_noise", {"sigma": (-0.1, 0.1)}),
    ("gaussian_noise", {"sigma": (0.2, 0.1)}),
    ("gaussian_noise", {"sigma": "large"}),
    ("gaussian_noise", {"sigma": (0.1, 0.2, 0.3)}),
    ("gaussian_noise", {"sigma": float("nan")}),
    ("gaussian_blur", {"sigma": 0.0}),
    ("gaussian_blur", {"sigma": (0.0, 1.0)}),
    ("gaussian_blur", {"kernel_size": 4}),
    ("gaussian_blur", {"kernel_size": (3, 6)}),
    ("gaussian_blur", {"kernel_size": (7, 3)}),
    ("gaussian_blur", {"kernel_size": 3.0}),
    ("median_blur", {"kernel_size": 2}),
    ("median_blur", {"kernel_size": (-1, 3)}),
    ("resize", {"scale": 0.0}),
    ("resize", {"scale": (1.0, 0.5)}),
    ("resize", {"interpolation": "lanczos"}),
    ("random_crop", {"fraction": (0.5, 1.2)}),
    ("random_crop", {"fraction": 0.0}),
    ("quantize", {"levels": 1}),
    ("jpeg_mask", {"keep_luma": 9}),
    ("jpeg_mask", {"keep_chroma": 0}),
    ("jpeg_ss", {"rounding": "floor"}),
    ("pseudo_jpeg", {"weights": {"jpeg_foo": 1.0}}),
    ("pseudo_jpeg", {"weights": {"jpeg_ss": -1.0}}),
    ("pseudo_jpeg", {"weights": {"jpeg_ss": 0.0, "jpeg_mask": 0.0}}),
    ("pseudo_jpeg", {"weights": {}}),
    *(
        (name, {"quality": quality})
        for name in ("jpeg_kornia", "jpeg_ss", "jpeg_ste", "pseudo_jpeg")
        for quality in ((0, 100), (50, 101), (90, 50), 50.5)
    ),
]


@pytest.mark.parametrize(
    ("name", "hparams"),
    INVALID,
    ids=[f"{n}-{next(iter(h))}-{i}" for i, (n, h) in enumerate(INVALID)],
)
def test_invalid_hyper_parameters_raise_value_error(name: str, hparams: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="received") as info:
        create_attack(name, **hparams)
    key = next(iter(hparams))
    assert key in str(info.value) or "weight" in str(info.value) or "methods" in str(info.value)


def test_every_attack_with_hyper_parameters_has_an_invalid_case() -> None:
    without = {"identity", "grayscale"}  # no hyper-parameters
    assert {name for name, _ in INVALID} | without == set(list_attacks())


def test_message_names_expected_and_received() -> None:
    with pytest.raises(ValueError) as info:
        create_attack("gaussian_blur", kernel_size=(3, 6))
    message = str(info.value)
    assert "odd ints" in message and "[1, inf]" in message and "(3, 6)" in message


def test_a_fixed_value_is_a_degenerate_range() -> None:
    attack = create_attack("gaussian_noise", sigma=0.03)
    params = attack.sample_params(4)
    assert params["sigma"].eq(0.03).all()
    assert create_attack("jpeg_ss", quality=50).sample_params(3)["quality"].eq(50).all()


@pytest.mark.parametrize(
    ("attacks", "kwargs", "match"),
    [
        ({"identity": -1.0}, None, "weight of 'identity'"),
        ({"identity": float("inf")}, None, "finite"),
        ({"identity": 0.0}, None, "at least one weight"),
        ({}, None, "non-empty"),
        ({"jpg": 1.0}, None, "unknown attacks"),
        ({"identity": 1.0}, {"gaussian_noise": {"sigma": 0.1}}, "not among the attacks"),
        ({"gaussian_noise": 1.0}, {"gaussian_noise": {"sigma": -1.0}}, "sigma"),
    ],
)
def test_attack_layer_validates_its_configuration(
    attacks: dict[str, float], kwargs: dict[str, Any] | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        AttackLayer(attacks, kwargs)


def test_a_wrong_image_type_is_both_a_type_error_and_a_value_error() -> None:
    from invprotect.attacks._checks import check_images as check_attack_images
    from invprotect.checks import ImageTypeError
    from invprotect.defences import check_images as check_defence_images

    uint8 = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    for check in (lambda x: check_attack_images("test", x), check_defence_images):
        with pytest.raises(ImageTypeError, match="floating-point") as caught:
            check(uint8)
        assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)
