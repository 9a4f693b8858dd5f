"""The registry pattern: explicit names, no duplicates, helpful errors, None kwargs dropped."""

from __future__ import annotations

import pytest

from invprotect import Registry, UnknownNameError
from invprotect.blocks import (
    DSACBlock,
    create_block,
    get_block,
    is_block,
    is_subnet,
    list_blocks,
    list_subnets,
    register_block,
    register_subnet,
)


def test_duplicates_are_refused() -> None:
    registry: Registry = Registry("widget")
    registry.register("a")(dict)
    with pytest.raises(ValueError, match="widget named 'a' is already registered"):
        registry.register("a")(list)
    assert registry.get("a") is dict


@pytest.mark.parametrize("name", ["", " a", "a*", "b?"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid widget name"):
        Registry("widget").register(name)


def test_unknown_names_list_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="unknown block 'dsca'; did you mean 'dsac'"):
        create_block("dsca", [(4, 8, 8)])
    with pytest.raises(KeyError, match="registered: dsac, haar_downsampling, haar_upsampling"):
        get_block("zzz")


def test_create_drops_none_so_entry_defaults_win() -> None:
    block = create_block("dsac", [(4, 8, 8)], subnet="conv", split_len=None, clamp=None)
    assert isinstance(block, DSACBlock)
    assert (block.split_len, block.clamp) == (2, 2.0)


def test_listing_and_membership() -> None:
    assert list_blocks() == ["dsac", "haar_downsampling", "haar_upsampling", "invertible_unet"]
    assert list_blocks("haar_*") == ["haar_downsampling", "haar_upsampling"]
    assert list_subnets() == ["conv", "resnet_sn"]
    assert is_block("dsac") and not is_block("conv")
    assert is_subnet("conv") and not is_subnet("dsac")


def test_builtin_names_cannot_be_taken_by_users() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_block("dsac")(DSACBlock)
    with pytest.raises(ValueError, match="already registered"):
        register_subnet("conv")(lambda c_in, c_out: None)
