"""The paper's baselines: reversible adversarial examples by data hiding (RAE, RIT).

`RAE` (Liu et al. 2018) hides the adversarial perturbation in the adversarial image;
`RIT` (Yin et al. 2019) transforms the original towards its adversarial image and hides
the side information. Both share `invprotect.baselines.embedding.EmbeddingProtector`
(the white-box attacks of `invprotect.baselines.adversarial`, then `invprotect.rdh`),
which follows the `invprotect.models.Protector` contract. Neither has a secret:
recovery needs only the scheme, not the model.

The registry builds them by name from a target model:

Example:
    >>> list_baselines()
    ['rae-cw', 'rae-igsm', 'rit-igsm']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from invprotect._registry import Registry
from invprotect.baselines.adversarial import Model, carlini_wagner_l2, igsm
from invprotect.baselines.embedding import EmbeddingProtector, RecoveryStatus
from invprotect.baselines.rae import RAE, RAE_ATTACKS
from invprotect.baselines.rit import RIT, rit_restore, rit_transform
from invprotect.models.protector import Protector

__all__ = [
    "RAE",
    "RAE_ATTACKS",
    "RIT",
    "EmbeddingProtector",
    "RecoveryStatus",
    "carlini_wagner_l2",
    "create_baseline",
    "igsm",
    "is_baseline",
    "list_baselines",
    "rit_restore",
    "rit_transform",
]

_BASELINES: Registry[Callable[..., Protector]] = Registry("baseline")


@_BASELINES.register("rae-igsm")
def _rae_igsm(model: Model | None, **attack_params: Any) -> RAE:
    return RAE(model, "igsm", attack_params)


@_BASELINES.register("rae-cw")
def _rae_cw(model: Model | None, **attack_params: Any) -> RAE:
    return RAE(model, "cw", attack_params)


@_BASELINES.register("rit-igsm")
def _rit_igsm(
    model: Model | None,
    block_sizes: Sequence[int] = (4, 8, 16),
    classes: int | None = None,
    **attack_params: Any,
) -> RIT:
    return RIT(model, "igsm", attack_params, block_sizes, classes)


def list_baselines(pattern: str = "*") -> list[str]:
    """Names of the registered baselines matching the shell-style ``pattern``."""
    return _BASELINES.names(pattern)


def is_baseline(name: str) -> bool:
    """Whether ``name`` is a registered baseline."""
    return _BASELINES.is_registered(name)


def create_baseline(name: str, model: Model | None, **params: Any) -> Protector:
    """Build the baseline registered as ``name`` against ``model``.

    Keyword arguments that are ``None`` are dropped, so the entry's defaults hold.

    Args:
        name: ``"rae-igsm"``, ``"rae-cw"`` or ``"rit-igsm"`` (see `list_baselines`).
        model: The classifier or ensemble to fool (``None``: recover only).
        **params: The attack's keyword arguments (``epsilon``, ``steps``, ``c``, ...);
            for ``rit-igsm`` also ``block_sizes`` and ``classes``.

    Raises:
        UnknownNameError: For an unregistered name (the message lists close matches).
        ValueError: For an unknown parameter.
    """
    return _BASELINES.create(name, model, **params)
