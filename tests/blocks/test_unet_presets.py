"""The paper and CPU presets of the U-shaped network: exact round trips at 32x32 and 256x256."""

from __future__ import annotations

import pytest
import torch

from invprotect.blocks import UNET_PRESETS, InvertibleUNet, UNetConfig
from tests.contracts import train_away_from_identity
from tests.tolerances import round_trip_tolerance


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(n, marks=pytest.mark.slow) if n == "paper" else n for n in sorted(UNET_PRESETS)
    ],
)
def trained_preset(request: pytest.FixtureRequest) -> InvertibleUNet:
    torch.manual_seed(2)
    net = InvertibleUNet.from_preset(request.param, dims_in=[(3, 32, 32)])
    train_away_from_identity(net, lambda: torch.rand(2, 3, 32, 32), steps=20)
    return net


@pytest.mark.parametrize("side", [32, 256])
def test_preset_round_trip(trained_preset: InvertibleUNet, side: int) -> None:
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
    with torch.no_grad():
        y = trained_preset.transform(x)
        assert (y - x).abs().mean() > 0.05  # the trained network is far from the identity
        assert y.abs().max() < 10.0  # ... and has not diverged
        x_back = trained_preset.inverse(y)
    # measured 2 ulps (cpu, 18 couplings) and 5-10 ulps (paper, 30): the allowance per
    # coupling leaves a wide margin, far below the > 0.05 a wrong inverse would leave
    tolerance = round_trip_tolerance(trained_preset, torch.cat([x, y]))
    assert (x_back - x).abs().max().item() <= tolerance


def test_presets_have_the_documented_shape() -> None:
    paper = InvertibleUNet.from_preset("paper")
    assert (paper.config.levels, paper.config.blocks_per_level) == (3, 4)
    assert paper.config.subnet == "resnet_sn"
    cpu = InvertibleUNet.from_preset("cpu")
    n_params = {
        name: sum(p.numel() for p in net.parameters())
        for name, net in [("paper", paper), ("cpu", cpu)]
    }
    assert n_params["cpu"] < n_params["paper"] / 3
    # 2 * levels modules of blocks_per_level couplings, plus one Haar step in each module
    assert len(paper.blocks) == 2 * 3 * (4 + 1)


def test_from_preset_overrides_and_rejects_unknown_presets() -> None:
    net = InvertibleUNet.from_preset("cpu", levels=2, hidden_channels=None)
    assert net.config == UNetConfig(**{**UNET_PRESETS["cpu"].__dict__, "levels": 2})
    with pytest.raises(ValueError, match=r"unknown preset 'gpu'.*'cpu', 'paper'"):
        InvertibleUNet.from_preset("gpu")
    with pytest.raises(ValueError, match=r"unknown UNetConfig fields \['depth'\]"):
        InvertibleUNet.from_preset("cpu", depth=2)


@pytest.mark.parametrize(
    ("field", "value"),
    [("levels", 0), ("blocks_per_level", 0), ("split_fraction", 1.0), ("levels", 1.5)],
)
def test_invalid_config_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        UNetConfig(**{field: value})


def test_transform_and_inverse_work_on_any_size_divisible_by_two_to_the_levels() -> None:
    net = InvertibleUNet([(3, 32, 32)], levels=2, blocks_per_level=1, hidden_channels=8)
    train_away_from_identity(net, lambda: torch.rand(2, 3, 12, 20), steps=5, lr=1e-2)
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        y = net.transform(x)
        x_back = net.inverse(y)
    assert (y - x).abs().mean() > 0.01  # not the identity it was initialised as
    torch.testing.assert_close(x_back, x, atol=round_trip_tolerance(net, torch.cat([x, y])), rtol=0)
