"""The attack registry: names, creation, registration, errors."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor

from invprotect import UnknownNameError
from invprotect.attacks import (
    Attack,
    AttackLayer,
    AttackParams,
    create_attack,
    is_attack,
    list_attacks,
    register_attack,
    registry,
)

REQUIRED = {
    "identity",
    "gaussian_noise",
    "gaussian_blur",
    "resize",
    "random_crop",
    "median_blur",
    "quantize",
    "jpeg_kornia",
    "jpeg_mask",
    "jpeg_ss",
    "jpeg_ste",
    "pseudo_jpeg",
}


def test_the_required_attacks_are_registered() -> None:
    assert REQUIRED <= set(list_attacks())
    assert list_attacks() == sorted(list_attacks())
    assert list_attacks("jpeg_*") == ["jpeg_kornia", "jpeg_mask", "jpeg_ss", "jpeg_ste"]
    assert all(is_attack(name) for name in REQUIRED)
    assert not is_attack("jpeg")


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_create_attack_builds_an_attack_module(name: str) -> None:
    attack = create_attack(name)
    assert isinstance(attack, Attack) and isinstance(attack, torch.nn.Module)


def test_straight_through_attacks_say_so() -> None:
    for name in ("quantize", "jpeg_ste"):
        attack = create_attack(name)
        assert attack.gradient == "straight-through"
        assert "straight-through" in (type(attack).__doc__ or "")


def test_create_attack_drops_none_kwargs() -> None:
    assert create_attack("gaussian_noise", sigma=None).sigma == (0.0, 0.05)


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'jpeg_ss'"):
        create_attack("jpeg_sss")


def test_register_attack_adds_an_entry_and_refuses_duplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry._ATTACKS, "_entries", dict(registry._ATTACKS._entries))

    @register_attack("invert")
    class Invert(Attack):
        """Photographic negative."""

        param_names: ClassVar[tuple[str, ...]] = ()

        def apply_params(self, x: Tensor, params: AttackParams) -> Tensor:
            return 1 - x

    assert is_attack("invert")
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(create_attack("invert")(x), 1 - x)
    result = AttackLayer({"invert": 1.0})(x)
    assert result.names == ["invert", "invert"]
    with pytest.raises(ValueError, match="already registered"):
        register_attack("invert")(Invert)
    with pytest.raises(ValueError, match="already registered"):
        register_attack("identity")(Invert)
