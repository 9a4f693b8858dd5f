"""The registry of attacks: every entry builds an `invprotect.attacks.Attack`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invprotect._registry import Registry
from invprotect.attacks.base import Attack
from invprotect.attacks.filters import GaussianBlur, MedianBlur
from invprotect.attacks.geometry import RandomCrop, Resize
from invprotect.attacks.jpeg import JPEGSS, JPEGSTE, JPEGMask, KorniaJPEG, PseudoJPEG
from invprotect.attacks.pixel import GaussianNoise, Grayscale, IdentityAttack, QuantizeSTE

AttackFactory = Callable[..., Attack]
"""An attack class or factory: ``(**hparams) -> Attack``."""

_ATTACKS: Registry[AttackFactory] = Registry("attack")
_ATTACKS.register("identity")(IdentityAttack)
_ATTACKS.register("gaussian_noise")(GaussianNoise)
_ATTACKS.register("gaussian_blur")(GaussianBlur)
_ATTACKS.register("median_blur")(MedianBlur)
_ATTACKS.register("resize")(Resize)
_ATTACKS.register("random_crop")(RandomCrop)
_ATTACKS.register("quantize")(QuantizeSTE)
_ATTACKS.register("grayscale")(Grayscale)
_ATTACKS.register("jpeg_kornia")(KorniaJPEG)
_ATTACKS.register("jpeg_mask")(JPEGMask)
_ATTACKS.register("jpeg_ss")(JPEGSS)
_ATTACKS.register("jpeg_ste")(JPEGSTE)
_ATTACKS.register("pseudo_jpeg")(PseudoJPEG)


def list_attacks(pattern: str = "*") -> list[str]:
    """Names of the registered attacks matching the shell-style ``pattern``.

    Example:
        >>> list_attacks("jpeg_*")
        ['jpeg_kornia', 'jpeg_mask', 'jpeg_ss', 'jpeg_ste']
    """
    return _ATTACKS.names(pattern)


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


def register_attack(name: str) -> Callable[[AttackFactory], AttackFactory]:
    """Decorator registering an `invprotect.attacks.Attack` subclass under ``name``.

    Raises:
        ValueError: If the name is taken or invalid.
    """
    return _ATTACKS.register(name)
