"""Attacks on a CUDA device: same contract, parameters drawn identically (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from invprotect.attacks import AttackLayer, create_attack, list_attacks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# Deterministic given the parameters, so CPU and CUDA agree up to float round-off.
DETERMINISTIC = [name for name in list_attacks() if name != "gaussian_noise"]


@pytest.mark.parametrize("name", list_attacks())
def test_contract_on_cuda(name: str) -> None:
    attack = create_attack(name).to("cuda")
    x = torch.rand(4, 3, 32, 32, device="cuda", requires_grad=True)
    params = attack.sample_params(4, torch.Generator().manual_seed(0), device="cuda")
    y = attack(x, params)
    assert y.device == x.device and y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(attack(x, params), y)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_cuda_matches_cpu(name: str) -> None:
    attack = create_attack(name)
    x = torch.rand(4, 3, 32, 32)
    params = attack.sample_params(4, torch.Generator().manual_seed(0))
    expected = attack(x, params)
    got = attack.to("cuda")(x.to("cuda"), {k: v.to("cuda") for k, v in params.items()}).cpu()
    # Mean, not max: float round-off can flip one simulated rounding of a DCT coefficient.
    assert (got - expected).abs().mean() < 1e-4


def test_attack_layer_on_cuda() -> None:
    layer = AttackLayer().to("cuda")
    x = torch.rand(8, 3, 32, 32, device="cuda")
    result = layer(x, generator=torch.Generator().manual_seed(0))
    assert result.images.device == x.device
    assert torch.equal(layer.replay(x, result), result.images)
