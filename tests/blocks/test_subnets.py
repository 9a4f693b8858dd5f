"""Subnet constructors: named, zero-initialised last layer, spectral norm where promised."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invprotect.blocks import DSACBlock, create_subnet, list_subnets, subnet_constructor


@pytest.mark.parametrize("name", list_subnets())
def test_subnet_maps_channels_and_starts_at_zero(name: str) -> None:
    net = create_subnet(name, 5, 7, hidden_channels=16)
    y = net(torch.rand(2, 5, 9, 11))
    assert y.shape == (2, 7, 9, 11)
    assert torch.equal(y, torch.zeros_like(y))


@pytest.mark.parametrize("name", list_subnets())
def test_coupling_with_a_fresh_subnet_is_the_identity(name: str) -> None:
    block = DSACBlock([(6, 8, 8)], subnet=name, hidden_channels=8)
    x = torch.rand(2, 6, 8, 8)
    (y,), log_det = block([x])
    assert torch.equal(y, x) and torch.equal(log_det, torch.zeros(2))


def test_resnet_sn_normalises_hidden_layers_and_only_in_train_mode_changes_them() -> None:
    net = create_subnet("resnet_sn", 4, 8, hidden_channels=16)
    nn.init.normal_(net.conv_out.weight)
    parametrized = [m for m in net.modules() if hasattr(m, "parametrizations")]
    assert len(parametrized) == 3  # conv_in, res_a, res_b; not the zero-initialised conv_out
    x = torch.rand(1, 4, 8, 8)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    first, second = net(x), net(x)  # each train-mode call runs a power iteration
    assert not torch.equal(first, second)
    sigma = torch.linalg.matrix_norm(net.res_a.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_subnet_constructor_binds_options_and_accepts_callables() -> None:
    constructor = subnet_constructor("conv", hidden_channels=4)
    assert constructor(2, 3).layers[0].out_channels == 4

    def custom(c_in: int, c_out: int) -> nn.Module:
        return nn.Conv2d(c_in, c_out, 1)

    assert subnet_constructor(custom) is custom
    with pytest.raises(ValueError, match="apply only to a registered name"):
        subnet_constructor(custom, hidden_channels=4)
    with pytest.raises(ValueError, match="positive int"):
        create_subnet("conv", 0, 3)
