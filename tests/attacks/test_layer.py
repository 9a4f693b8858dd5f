"""AttackLayer: choice of attacks by weight, per sample or per batch, records and replay."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from invprotect.attacks import DEFAULT_ATTACKS, AttackLayer, AttackResult, list_attacks


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_default_layer_has_identity_and_the_papers_five_attacks() -> None:
    layer = AttackLayer()
    assert set(layer.attacks) == set(DEFAULT_ATTACKS)
    assert "identity" in layer.attacks
    assert sum(layer.weights.values()) == pytest.approx(1.0)


def test_result_reports_one_name_and_params_per_sample(images: Tensor) -> None:
    layer = AttackLayer()
    result = layer(images, generator=_generator())
    assert isinstance(result, AttackResult)
    images_out, names, params = result
    assert images_out.shape == images.shape and images_out.dtype == images.dtype
    assert len(names) == len(params) == images.shape[0]
    for name, record in zip(names, params, strict=True):
        assert name in layer.attacks
        assert set(record) == set(layer.attacks[name].param_names)
        assert all(isinstance(value, Tensor) and value.ndim == 0 for value in record.values())


def test_each_sample_gets_exactly_its_recorded_attack(images: Tensor) -> None:
    layer = AttackLayer(dict.fromkeys(list_attacks(), 1.0))
    x = images.repeat(6, 1, 1, 1)
    result = layer(x, generator=_generator(3))
    assert len(set(result.names)) > 3
    for index, (name, record) in enumerate(zip(result.names, result.params, strict=True)):
        attack = layer.attacks[name]
        alone = attack(x[index : index + 1], {k: v.unsqueeze(0) for k, v in record.items()})
        assert torch.allclose(result.images[index], alone[0], atol=1e-5), name


def test_replay_reproduces_the_result(images: Tensor) -> None:
    layer = AttackLayer(dict.fromkeys(list_attacks(), 1.0))
    x = images.repeat(4, 1, 1, 1)
    result = layer(x, generator=_generator(5))
    assert torch.equal(layer.replay(x, result), result.images)
    # A layer built the same way replays another layer's record.
    twin = AttackLayer(dict.fromkeys(list_attacks(), 1.0))
    assert torch.equal(twin.replay(x, result), result.images)


def test_same_seed_same_result_different_seed_different_choice(images: Tensor) -> None:
    layer = AttackLayer()
    x = images.repeat(4, 1, 1, 1)
    first = layer(x, generator=_generator(9))
    second = layer(x, generator=_generator(9))
    assert first.names == second.names
    assert torch.equal(first.images, second.images)
    other = layer(x, generator=_generator(10))
    assert other.names != first.names or not torch.equal(other.images, first.images)


def test_choice_frequencies_follow_the_weights() -> None:
    layer = AttackLayer({"identity": 1.0, "quantize": 3.0})
    result = layer(torch.rand(4000, 1, 2, 2), generator=_generator())
    share = result.names.count("quantize") / len(result.names)
    assert share == pytest.approx(0.75, abs=0.03)


def test_zero_weight_attacks_are_never_chosen_nor_built(images: Tensor) -> None:
    layer = AttackLayer({"identity": 1.0, "gaussian_blur": 0.0})
    assert set(layer.attacks) == {"identity"}
    result = layer(images, generator=_generator())
    assert set(result.names) == {"identity"}
    assert torch.equal(result.images, images)


def test_per_batch_mode_applies_one_attack_to_the_whole_batch(images: Tensor) -> None:
    layer = AttackLayer(dict.fromkeys(list_attacks(), 1.0), per_sample=False)
    seen = set()
    for seed in range(6):
        result = layer(images, generator=_generator(seed))
        assert len(set(result.names)) == 1
        seen.add(result.names[0])
        assert torch.equal(layer.replay(images, result), result.images)
    assert len(seen) > 1


def test_attack_kwargs_reach_the_attacks() -> None:
    layer = AttackLayer(
        {"gaussian_noise": 1.0, "pseudo_jpeg": 1.0},
        {"gaussian_noise": {"sigma": (0.2, 0.3)}, "pseudo_jpeg": {"quality": (40, 60)}},
    )
    assert layer.attacks["gaussian_noise"].sigma == (0.2, 0.3)
    assert layer.attacks["pseudo_jpeg"].quality == (40, 60)


def test_gradient_flows_through_every_sample(images: Tensor) -> None:
    layer = AttackLayer()
    x = images.repeat(4, 1, 1, 1).requires_grad_(True)
    result = layer(x, generator=_generator(2))
    result.images.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()


def test_empty_batch_and_bad_records(images: Tensor) -> None:
    layer = AttackLayer()
    empty = layer(images[:0])
    assert empty.images.shape[0] == 0 and empty.names == [] and empty.params == []
    result = layer(images, generator=_generator())
    with pytest.raises(ValueError, match="record of 2 samples"):
        layer.replay(images[:2], result)
    narrow = AttackLayer({"identity": 1.0})
    foreign = AttackResult(images, ["gaussian_blur"] * 3, [{}] * 3)
    with pytest.raises(ValueError, match="does not have"):
        narrow.replay(images, foreign)
