"""Contract tests run on every registered attack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.autograd.gradcheck import GradcheckError

from invprotect.attacks import Attack, create_attack, list_attacks

ATTACKS = list_attacks()
SEED = 1234


def _build(name: str) -> Attack:
    return create_attack(name)


# ----------------------------------------------------------------------------- basic contract


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_and_range_are_kept(name: str, dtype: torch.dtype, images: Tensor) -> None:
    attack = _build(name)
    # Push part of the input to the range's ends, where the clamp matters.
    x = images.clone()
    x[:, :, :2] = 0.0
    x[:, :, -2:] = 1.0
    y = attack(x.to(dtype), generator=torch.Generator().manual_seed(SEED))
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert y.device == x.device
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", ATTACKS)
def test_gradient_reaches_the_input_and_is_finite(name: str, images: Tensor) -> None:
    attack = _build(name)
    x = images.clone().requires_grad_(True)
    y = attack(x, generator=torch.Generator().manual_seed(SEED))
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ATTACKS)
def test_gradient_passes_pixels_exactly_at_zero_and_one(name: str) -> None:
    """Black and white pixels (8-bit 0 and 255) must not lose their gradient in the clamp."""
    attack = _build(name)
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8:] = 1.0
    x.requires_grad_(True)
    y = attack(x, generator=torch.Generator().manual_seed(SEED))
    y.sum().backward()
    if name in ("identity", "quantize", "jpeg_ste"):
        # Identity-like backward passes: every pixel's gradient is exactly 1.
        assert torch.equal(x.grad, torch.ones_like(x))
    else:
        assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ATTACKS)
def test_same_generator_seed_and_same_params_replay_the_output(name: str, images: Tensor) -> None:
    attack = _build(name)
    y1 = attack(images, generator=torch.Generator().manual_seed(SEED))
    params = attack.sample_params(images.shape[0], torch.Generator().manual_seed(SEED))
    y2 = attack(images, params)
    y3 = attack(images, {key: value.clone() for key, value in params.items()})
    assert torch.equal(y1, y2)
    assert torch.equal(y2, y3)


@pytest.mark.parametrize("name", ATTACKS)
def test_sample_params_follow_the_declared_names_batch_and_device(name: str) -> None:
    attack = _build(name)
    params = attack.sample_params(5, torch.Generator().manual_seed(0), device="cpu")
    assert set(params) == set(attack.param_names)
    for value in params.values():
        assert isinstance(value, Tensor)
        assert value.shape[0] == 5
        assert value.device == torch.device("cpu")
    empty = attack.sample_params(0)
    assert set(empty) == set(attack.param_names)
    assert all(value.shape[0] == 0 for value in empty.values())


@pytest.mark.parametrize("name", [n for n in ATTACKS if _build(n).param_names])
def test_different_seeds_draw_different_params(name: str) -> None:
    attack = _build(name)
    first = attack.sample_params(8, torch.Generator().manual_seed(0))
    second = attack.sample_params(8, torch.Generator().manual_seed(1))
    assert any(not torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("name", ATTACKS)
def test_params_of_the_wrong_shape_or_keys_are_rejected(name: str, images: Tensor) -> None:
    attack = _build(name)
    params = attack.sample_params(images.shape[0])
    with pytest.raises(ValueError, match="expected parameters"):
        attack(images, {**params, "bogus": torch.zeros(images.shape[0])})
    if params:
        key = next(iter(params))
        with pytest.raises(ValueError, match="one per sample"):
            attack(images, {**params, key: params[key][:1]})


@pytest.mark.parametrize("name", ATTACKS)
def test_bad_inputs_are_rejected_with_a_clear_message(name: str) -> None:
    attack = _build(name)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        attack(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="floating"):
        attack(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        attack([[0.5]])  # type: ignore[arg-type]
    grey = torch.rand(2, 1, 16, 16)
    if attack.rgb_only:
        with pytest.raises(ValueError, match="RGB"):
            attack(grey)
    else:
        assert attack(grey).shape == grey.shape


@pytest.mark.parametrize("name", ATTACKS)
def test_fixed_tensors_are_buffers_that_follow_the_module(name: str, images: Tensor) -> None:
    attack = _build(name)
    assert list(attack.parameters()) == []
    if name in ("jpeg_kornia", "jpeg_mask", "jpeg_ss", "pseudo_jpeg"):
        assert len(list(attack.buffers())) > 0
    params = attack.sample_params(images.shape[0], torch.Generator().manual_seed(0))
    reference = attack(images, params)
    attack.to(torch.float64)
    assert all(buffer.dtype == torch.float64 for buffer in attack.buffers())
    assert torch.allclose(attack(images, params), reference, atol=1e-5)


# ----------------------------------------------------------------------------- gradcheck


@dataclass(frozen=True)
class GradCase:
    """An attack with fixed parameters for ``torch.autograd.gradcheck`` in float64."""

    id: str
    name: str
    params: Callable[[int], dict[str, Tensor]]
    hparams: dict[str, Any] = field(default_factory=dict)
    batch: int = 1


def _fixed(**values: Any) -> Callable[[int], dict[str, Tensor]]:
    """Parameters with one value per key, or one value per sample when given a list."""

    def build(batch: int) -> dict[str, Tensor]:
        return {
            key: torch.tensor(value) if isinstance(value, list) else torch.full((batch,), value)
            for key, value in values.items()
        }

    return build


GRADCHECK_CASES = [
    GradCase("identity", "identity", _fixed()),
    GradCase("grayscale", "grayscale", _fixed()),
    GradCase("gaussian_noise", "gaussian_noise", _fixed(sigma=0.02, seed=7)),
    GradCase("gaussian_blur", "gaussian_blur", _fixed(sigma=1.1, kernel_size=5)),
    GradCase(
        "gaussian_blur-grouped",
        "gaussian_blur",
        _fixed(sigma=[0.8, 1.2, 1.0], kernel_size=[5, 3, 5]),
        batch=3,
    ),
    GradCase("median_blur", "median_blur", _fixed(kernel_size=3)),
    GradCase("median_blur-grouped", "median_blur", _fixed(kernel_size=[3, 5]), batch=2),
    GradCase("resize-down", "resize", _fixed(scale=0.6)),
    GradCase("resize-up", "resize", _fixed(scale=1.3)),
    GradCase("resize-grouped", "resize", _fixed(scale=[0.5, 0.8, 0.5]), batch=3),
    GradCase("random_crop", "random_crop", _fixed(height=0.75, width=0.6, top=0.3, left=0.8)),
    GradCase("jpeg_kornia", "jpeg_kornia", _fixed(quality=75)),
    GradCase("jpeg_mask", "jpeg_mask", _fixed()),
    GradCase("jpeg_ss", "jpeg_ss", _fixed(quality=75)),
    GradCase("jpeg_ss-near-zero", "jpeg_ss", _fixed(quality=40), {"rounding": "cubic-near-zero"}),
    GradCase(
        "pseudo_jpeg-smooth-members",
        "pseudo_jpeg",
        _fixed(quality=60),
        {"weights": {"jpeg_ss": 1.0, "jpeg_mask": 1.0, "jpeg_kornia": 1.0}},
    ),
]
_STRAIGHT_THROUGH = (
    "straight-through estimator: the forward pass is piecewise constant (finite differences "
    "are 0 almost everywhere) while the backward pass is the identity by design"
)
NOT_GRADCHECKED = {
    "quantize": _STRAIGHT_THROUGH,
    "jpeg_ste": _STRAIGHT_THROUGH,
    "pseudo_jpeg": "the default mix contains jpeg_ste (" + _STRAIGHT_THROUGH + "); the mix of "
    "its smooth members is gradchecked as 'pseudo_jpeg-smooth-members'",
}


def test_every_attack_is_gradchecked_or_has_a_stated_reason() -> None:
    checked = {case.name for case in GRADCHECK_CASES if case.name not in NOT_GRADCHECKED}
    assert checked | set(NOT_GRADCHECKED) == set(ATTACKS)
    assert not checked & set(NOT_GRADCHECKED)
    assert _build("quantize").gradient == _build("jpeg_ste").gradient == "straight-through"


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id) for case in GRADCHECK_CASES]
    + [
        pytest.param(None, id=name, marks=pytest.mark.skip(reason=reason))
        for name, reason in NOT_GRADCHECKED.items()
    ],
)
def test_gradcheck_float64(case: GradCase) -> None:
    attack = create_attack(case.name, **case.hparams)
    # Inside (0.25, 0.75): away from the clamp's kinks at 0 and 1.
    generator = torch.Generator().manual_seed(3)
    x = 0.25 + 0.5 * torch.rand(case.batch, 3, 16, 16, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    params = case.params(case.batch)
    assert torch.autograd.gradcheck(
        lambda t: attack(t, params), (x,), eps=1e-6, atol=1e-5, fast_mode=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quantize", "jpeg_ste"])
def test_gradcheck_does_detect_the_straight_through_gradients(name: str) -> None:
    """The check above has teeth: the deliberately 'wrong' STE gradients fail it."""
    attack = create_attack(name)
    x = 0.25 + 0.5 * torch.rand(1, 3, 16, 16, dtype=torch.float64)
    x.requires_grad_(True)
    params = {"quality": torch.tensor([75])} if attack.param_names else {}
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(
            lambda t: attack(t, params), (x,), eps=1e-6, atol=1e-5, fast_mode=True
        )
