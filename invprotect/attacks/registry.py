"""The registry of attacks: every entry builds an `invprotect.attacks.Attack`."""

from __future__ import annotations

from typing import Any

# The attack modules register their entries where they define them; importing them here
# fills the registry.
from invprotect.attacks import filters, geometry, jpeg, pixel  # noqa: F401
from invprotect.attacks.base import ATTACKS, Attack, AttackFactory, register_attack

__all__ = ["AttackFactory", "create_attack", "is_attack", "list_attacks", "register_attack"]

_ATTACKS = ATTACKS


def list_attacks(pattern: str = "*", *, tag: str | None = None) -> list[str]:
    """Names of the registered attacks matching the shell-style ``pattern`` (and ``tag``).

    Example:
        >>> list_attacks("jpeg_*")
        ['jpeg_kornia', 'jpeg_mask', 'jpeg_ss', 'jpeg_ste']
        >>> list_attacks(tag="jpeg_method")
        ['jpeg_kornia', 'jpeg_mask', 'jpeg_ss', 'jpeg_ste']
    """
    return _ATTACKS.names(pattern, tag=tag)


def is_attack(name: str) -> bool:
    """Whether ``name`` is a registered attack."""
    return _ATTACKS.is_registered(name)


def create_attack(name: str, **hparams: Any) -> Attack:
    """Build the attack registered as ``name``; hyper-parameters that are ``None`` are dropped.

    Args:
        name: A registered name (see `list_attacks`).
        **hparams: Keyword arguments of the attack's constructor.

    Returns:
        The attack module.

    Raises:
        UnknownNameError: For an unregistered name (the message lists close matches).
        ValueError: If a hyper-parameter range is invalid.

    Example:
        >>> import torch
        >>> attack = create_attack("gaussian_noise", sigma=(0.01, 0.02))
        >>> attack(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """
    return _ATTACKS.create(name, **hparams)
