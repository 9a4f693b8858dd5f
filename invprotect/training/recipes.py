"""Named protector recipes: how training pushes the images, apart from steps and quality.

A recipe is the part of `ProtectorTrainingConfig` that decides what the perturbation
learns to survive: the fooling loss, its margin, the attack mix and the low-frequency
penalty. ``invprotect train --recipe NAME`` takes one of `RECIPES`; `docs/results.md`
compares them against the thief ("Four recipes at equal training").

Example:
    >>> from invprotect.training.protector import ProtectorTrainingConfig
    >>> settings = RECIPES["wide-margin-squeeze"].settings()
    >>> ProtectorTrainingConfig(steps=10, **settings).margin
    20.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from invprotect._registry import Presets
from invprotect.training.protector import FOOLING_MODES, TRAINING_ATTACKS

PURIFYING_ATTACKS: dict[str, float] = TRAINING_ATTACKS | {"grayscale": 1.0, "pseudo_jpeg": 2.0}
"""The training mix plus grayscale squeezing and twice the (quality 10-100) pseudo-JPEG."""


@dataclass(frozen=True)
class Recipe:
    """The fooling and robustness settings of a protector's training.

    Attributes:
        fooling: ``"margin"`` (untargeted) or ``"class-consistent"`` (every class pushed
            to the next one); see `ProtectorTrainingConfig`.
        margin: Logit margin of the fooling loss: how far past the decision boundary an
            image is pushed.
        attacks: Attack mix of training (``None``: `TRAINING_ATTACKS`).
        smoothness: Weight of the penalty on the perturbation's high frequencies.

    Raises:
        ValueError: For an unknown fooling mode, a margin that is not positive or a
            negative smoothness.
    """

    fooling: str = "margin"
    margin: float = 5.0
    attacks: Mapping[str, float] | None = None
    smoothness: float = 0.0

    def __post_init__(self) -> None:
        if self.fooling not in FOOLING_MODES or self.margin <= 0 or self.smoothness < 0:
            raise ValueError(
                f"a recipe needs fooling in {FOOLING_MODES}, margin > 0 and smoothness >= 0, "
                f"got {self.fooling!r}, {self.margin}, {self.smoothness}"
            )

    def settings(self) -> dict[str, Any]:
        """The recipe as `ProtectorTrainingConfig` keyword arguments."""
        settings = asdict(self)
        settings["attacks"] = dict(self.attacks) if self.attacks is not None else None
        return settings


RECIPES: Presets[Recipe] = Presets(
    "protector recipe",
    Recipe,
    {
        "margin": Recipe(),
        "wide-margin-squeeze": Recipe(margin=20.0, attacks=PURIFYING_ATTACKS, smoothness=0.02),
        "class-consistent": Recipe(fooling="class-consistent", margin=10.0),
    },
)
"""``margin``: the default (each image pushed just past the boundary). ``wide-margin-squeeze``:
pushed further (margin 20) through grayscale and stronger JPEG, with low frequencies favoured;
it fooled most in the 2026-11-30 comparison, at an SSIM cost (0.90 against 0.93 at 30 dB).
``class-consistent``: every class pushed to the next one (Fowl et al., 2021)."""
