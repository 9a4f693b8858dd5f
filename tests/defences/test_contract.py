"""The contract every registered defence keeps, checked on real CIFAR-10 images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from invprotect.defences import (
    Defence,
    create_defence,
    list_defences,
    sample_generators,
)
from invprotect.metrics import psnr

# Settings that keep every entry fast; comdefend gets the trained fixture's weights.
TEST_SETTINGS: dict[str, dict[str, Any]] = {
    "bit_depth": {"bits": 3},
    "comdefend": {},
    "dipdefend": {"max_iterations": 12, "channels": (8, 16), "warmup": 4, "patience": 4},
    "gaussian_blur": {"sigma": 1.0},
    "gaussian_noise": {"sigma": 8.0},
    "grayscale": {},
    "jpeg": {"quality": 50},
    "median_filter": {"kernel_size": 3},
    "resize": {"scale": 0.75},
}


def build(name: str, weights: Path, **overrides: Any) -> Defence:
    kwargs = {**TEST_SETTINGS[name], **overrides}
    if name == "comdefend":
        kwargs["weights"] = weights
    return create_defence(name, **kwargs)


def on_grid(x: torch.Tensor) -> bool:
    return bool(torch.equal(x * 255, (x * 255).round()))


def marked_slow(names: list[str]) -> list[Any]:
    """``names`` as parameters, the defences tagged ``slow`` in the registry marked ``slow``."""
    slow = list_defences(tag="slow")
    return [pytest.param(name, marks=pytest.mark.slow) if name in slow else name for name in names]


def test_every_registered_defence_is_covered() -> None:
    assert sorted(TEST_SETTINGS) == list_defences()


@pytest.mark.parametrize("name", marked_slow(list_defences()))
def test_output_is_8bit_same_shape_and_deterministic(
    name: str, images: torch.Tensor, comdefend_weights: Path
) -> None:
    defence = build(name, comdefend_weights)
    out = defence(images)
    assert isinstance(defence, Defence)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert on_grid(out), f"{name} left values off the 8-bit grid"
    assert torch.equal(defence(images), out), f"{name} is not deterministic"
    assert torch.equal(build(name, comdefend_weights)(images), out)
    assert torch.equal(images, images.clone())  # the input is left alone


@pytest.mark.parametrize("name", marked_slow(list_defences()))
def test_changes_the_image_but_keeps_it_recognisable(
    name: str, images: torch.Tensor, comdefend_weights: Path
) -> None:
    scores = psnr(build(name, comdefend_weights)(images), images)
    assert torch.isfinite(scores).any(), f"{name} returned its input unchanged"
    # The tiny test ComDefend and a 12-iteration DIPDefend are crude reconstructions.
    floor = 12.0 if name in ("comdefend", "dipdefend") else 20.0
    assert scores.mean() > floor


@pytest.mark.parametrize("name", marked_slow(list_defences()))
def test_odd_sizes_and_a_single_image(
    name: str, images: torch.Tensor, comdefend_weights: Path
) -> None:
    defence = build(name, comdefend_weights)
    odd = images[:2, :, 3:28, 1:30]  # 25 x 29
    out = defence(odd)
    assert out.shape == odd.shape and on_grid(out)
    assert defence(images[:1]).shape == (1, 3, 32, 32)
    assert defence(images[:0]).shape == (0, 3, 32, 32)


@pytest.mark.parametrize(
    "name", marked_slow([n for n in list_defences() if n in ("gaussian_noise", "dipdefend")])
)
def test_random_defences_follow_their_seed_and_generators(
    name: str, images: torch.Tensor, comdefend_weights: Path
) -> None:
    defence = build(name, comdefend_weights)
    assert defence.stochastic
    other_seed = build(name, comdefend_weights, seed=1)
    assert not torch.equal(defence(images), other_seed(images))
    generator = torch.Generator().manual_seed(5)
    first = defence(images, generator)
    assert torch.equal(first, defence(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, defence(images, torch.Generator().manual_seed(6)))
    # One generator per image: an image's result does not depend on its batch.
    keys = [f"img{i}.png" for i in range(images.shape[0])]
    whole = defence(images, sample_generators(3, keys))
    part = defence(images[2:4], sample_generators(3, keys[2:4]))
    assert torch.equal(whole[2:4], part)
    with pytest.raises(ValueError, match="generators for a batch"):
        defence(images, sample_generators(3, keys[:2]))


@pytest.mark.parametrize(
    "name", [n for n in list_defences() if n not in ("gaussian_noise", "dipdefend")]
)
def test_deterministic_defences_ignore_generators(
    name: str, images: torch.Tensor, comdefend_weights: Path
) -> None:
    defence = build(name, comdefend_weights)
    assert not defence.stochastic
    assert torch.equal(defence(images, torch.Generator().manual_seed(9)), defence(images))


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (lambda x: x * 255, ValueError, r"\[0, 1\]"),
        (lambda x: x * 0.999, ValueError, "8-bit grid"),
        (lambda x: x[0], ValueError, r"\(B, 3, H, W\)"),
        (lambda x: x[:, :1], ValueError, r"\(B, 3, H, W\)"),
        (lambda x: (x * 255).to(torch.uint8), TypeError, "floating-point"),
    ],
)
def test_bad_input_is_refused_with_a_helpful_message(
    bad: Any, error: type[Exception], match: str, images: torch.Tensor
) -> None:
    defence = create_defence("jpeg")
    with pytest.raises(error, match=match):
        defence(bad(images))
