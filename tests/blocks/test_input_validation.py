"""Bad input raises a ValueError that names what was expected and what was received."""

from __future__ import annotations

import pytest
import torch

from invprotect.blocks import (
    DSACBlock,
    HaarDownsampling,
    HaarUpsampling,
    InvertibleUNet,
)

UNET = InvertibleUNet([(3, 32, 32)], levels=3, blocks_per_level=1, hidden_channels=8)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.rand(3, 32, 32), r"4-D tensor \(B, C, H, W\), got 3-D with shape \(3, 32, 32\)"),
        (torch.rand(1, 1, 32, 32), "built for 3 channels, got 1"),
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), "floating-point.*torch.uint8"),
        (torch.rand(1, 3, 36, 32), "divisible by 8, got 36x32"),
    ],
)
def test_unet_rejects_bad_images(x: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNET([x])
    with pytest.raises(ValueError, match=message):
        UNET([x], rev=True)


def test_blocks_take_a_list_not_a_bare_tensor() -> None:
    with pytest.raises(ValueError, match=r"list holding one tensor.*got a bare tensor"):
        HaarDownsampling([(3, 4, 4)])(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="exactly one input tensor, got 2"):
        HaarDownsampling([(3, 4, 4)])([torch.rand(1, 3, 4, 4)] * 2)


def test_haar_checks_sides_and_channels_in_both_directions() -> None:
    down = HaarDownsampling([(3, 8, 8)])
    with pytest.raises(ValueError, match="divisible by 2, got 7x8"):
        down([torch.rand(1, 3, 7, 8)])
    with pytest.raises(ValueError, match="built for 12 channels, got 3"):
        down([torch.rand(1, 3, 4, 4)], rev=True)
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        HaarUpsampling([(6, 4, 4)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dims_in": [(1, 8, 8)]}, "at least 2 channels"),
        ({"dims_in": [(6, 8, 8)], "split_len": 6}, r"split_len must be in \[1, 5\].*got 6"),
        ({"dims_in": [(6, 8, 8)], "clamp": 0.0}, "clamp must be positive"),
        ({"dims_in": [(6, 8)]}, r"dims_in=\[\(C, H, W\)\]"),
        ({"dims_in": [(6, 8, 8)], "subnet": "resnet"}, "unknown subnet 'resnet'; did you mean"),
    ],
)
def test_dsac_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, KeyError), match=message):
        DSACBlock(**kwargs)
