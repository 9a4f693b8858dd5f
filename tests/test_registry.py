"""The registry pattern: explicit names, no duplicates, helpful errors, None kwargs dropped."""

from __future__ import annotations

import pytest

from invprotect import Registry, UnknownNameError
from invprotect._registry import Presets, UnknownPresetError, parse_spec
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
    with pytest.raises(KeyError, match="registered: additive_coupling, dsac, haar_downsampling"):
        get_block("zzz")


def test_create_drops_none_so_entry_defaults_win() -> None:
    block = create_block("dsac", [(4, 8, 8)], subnet="conv", split_len=None, clamp=None)
    assert isinstance(block, DSACBlock)
    assert (block.split_len, block.clamp) == (2, 2.0)


def test_listing_and_membership() -> None:
    assert list_blocks() == [
        "additive_coupling",
        "dsac",
        "haar_downsampling",
        "haar_upsampling",
        "invertible_unet",
        "lifting_downsampling",
        "lifting_upsampling",
    ]
    assert list_blocks("haar_*") == ["haar_downsampling", "haar_upsampling"]
    assert list_subnets() == ["conv", "resnet_sn"]
    assert is_block("dsac") and not is_block("conv")
    assert is_subnet("conv") and not is_subnet("dsac")


def test_builtin_names_cannot_be_taken_by_users() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_block("dsac")(DSACBlock)
    with pytest.raises(ValueError, match="already registered"):
        register_subnet("conv")(lambda c_in, c_out: None)


def test_tags_label_entries_instead_of_side_tables() -> None:
    registry: Registry = Registry("widget")
    registry.register("a", tags=("slow", "big"))(dict)
    registry.register("b")(list)
    assert registry.names(tag="slow") == ["a"] and registry.names(tag="none") == []
    assert registry.names() == ["a", "b"]
    assert registry.tags("a") == {"slow", "big"} and registry.tags("b") == frozenset()
    with pytest.raises(UnknownNameError, match="unknown widget 'c'"):
        registry.tags("c")
    with pytest.raises(ValueError, match="tags of widget 'd' must be non-empty strings"):
        registry.register("d", tags=("",))


def test_the_registries_carry_what_the_side_tables_listed() -> None:
    from invprotect.attacks import JPEG_METHODS, list_attacks
    from invprotect.defences import list_defences
    from invprotect.evaluation import SLOW_DEFENCES

    assert JPEG_METHODS == ("jpeg_kornia", "jpeg_mask", "jpeg_ss", "jpeg_ste")
    assert list_attacks(tag="jpeg_method") == list(JPEG_METHODS)
    assert SLOW_DEFENCES == {"dipdefend"} == set(list_defences(tag="slow"))
    assert list_defences(tag="trainable") == ["comdefend"]


def test_presets_are_validated_configs_with_one_unknown_message() -> None:
    presets = Presets("widget", tuple, {"small": (1,), "large": (9,)})
    assert list(presets) == ["small", "large"] and presets["large"] == (9,)
    assert "small" in presets and "tiny" not in presets and len(presets) == 2
    with pytest.raises(UnknownPresetError, match=r"unknown preset 'smal' of widget; did you mean"):
        presets["smal"]
    with pytest.raises(KeyError):  # a Mapping's contract
        presets["tiny"]
    with pytest.raises(ValueError, match=r"choose one of \['large', 'small'\]"):
        presets["tiny"]
    with pytest.raises(ValueError, match="preset named 'small' already exists"):
        presets.add("small", (2,))
    with pytest.raises(TypeError, match="must be a tuple, got list"):
        presets.add("medium", [5])
    with pytest.raises(ValueError, match="invalid widget preset name"):
        presets.add("a*", (5,))
    assert presets.get("tiny") is None  # Mapping.get still works


def test_every_preset_table_is_a_registry_of_presets() -> None:
    from invprotect.blocks import UNET_PRESETS, InvertibleUNet
    from invprotect.defences import COMDEFEND_PRESETS
    from invprotect.models import RAEG, RAEG_PRESETS

    for presets in (UNET_PRESETS, COMDEFEND_PRESETS, RAEG_PRESETS):
        assert isinstance(presets, Presets)
        assert all(isinstance(c, presets.config_type) for c in presets.values())
    with pytest.raises(UnknownPresetError, match="unknown preset 'gpu' of InvertibleUNet"):
        InvertibleUNet.from_preset("gpu")
    with pytest.raises(UnknownPresetError, match="unknown preset 'cpu' of RAEG; did you mean"):
        RAEG.from_preset("cpu")


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("jpeg", ("jpeg", {})),
        ("jpeg:quality=50", ("jpeg", {"quality": 50})),
        (
            " resize : scale=0.75 , interpolation=bicubic",
            ("resize", {"scale": 0.75, "interpolation": "bicubic"}),
        ),
        ("x:a=true,b=none,c='7',d=1e-3", ("x", {"a": True, "b": None, "c": "7", "d": 1e-3})),
    ],
)
def test_the_one_spec_grammar(spec: str, parsed: tuple) -> None:
    assert parse_spec(spec, "widget") == parsed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty widget spec"),
        ("a b", "bad widget name"),
        ("a:", "has ':' but no key=value"),
        ("a:b", "'b' in widget spec 'a:b' is not key=value"),
        ("a:b=1,b=2", "given twice"),
        ("a:b=", "has no value"),
        ("a:1b=2", "bad parameter name"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec, "widget")
