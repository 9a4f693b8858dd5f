"""The named protector recipes: valid training settings, clear errors."""

from __future__ import annotations

import pytest

from invprotect import UnknownPresetError
from invprotect.training.protector import TRAINING_ATTACKS, ProtectorTrainingConfig
from invprotect.training.recipes import PURIFYING_ATTACKS, RECIPES, Recipe


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_makes_valid_training_settings(name: str) -> None:
    config = ProtectorTrainingConfig(steps=5, **RECIPES[name].settings())
    assert config.margin == RECIPES[name].margin and config.fooling == RECIPES[name].fooling


def test_the_default_recipe_is_the_default_training() -> None:
    defaults = ProtectorTrainingConfig()
    assert ProtectorTrainingConfig(**RECIPES["margin"].settings()) == defaults


def test_wide_margin_squeeze_is_the_measured_recipe() -> None:
    recipe = RECIPES["wide-margin-squeeze"]
    assert (recipe.margin, recipe.smoothness) == (20.0, 0.02)
    assert recipe.attacks == PURIFYING_ATTACKS
    assert PURIFYING_ATTACKS["grayscale"] == 1.0 and PURIFYING_ATTACKS["pseudo_jpeg"] == 2.0
    assert set(TRAINING_ATTACKS) < set(PURIFYING_ATTACKS)
    settings = recipe.settings()
    settings["attacks"]["grayscale"] = 0.0  # a copy: the preset stays as it was
    assert RECIPES["wide-margin-squeeze"].attacks["grayscale"] == 1.0


def test_bad_recipes_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="margin > 0"):
        Recipe(margin=0.0)
    with pytest.raises(ValueError, match="fooling"):
        Recipe(fooling="targeted")
    with pytest.raises(UnknownPresetError, match="wide-margin-squeeze"):
        RECIPES["wide-margin"]
