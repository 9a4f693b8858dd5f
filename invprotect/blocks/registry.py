"""The registry of invertible blocks: every entry is a FrEIA ``InvertibleModule`` class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from FrEIA.modules import InvertibleModule

from invprotect._registry import Registry
from invprotect.blocks.coupling import DSACBlock
from invprotect.blocks.haar import HaarDownsampling, HaarUpsampling
from invprotect.blocks.integer import AdditiveCouplingBlock, LiftingDownsampling, LiftingUpsampling
from invprotect.blocks.unet import InvertibleUNet

BlockClass = Callable[..., InvertibleModule]
"""A block class: ``(dims_in, dims_c=None, **hparams) -> InvertibleModule``."""

_BLOCKS: Registry[BlockClass] = Registry("block")
_BLOCKS.register("haar_downsampling")(HaarDownsampling)
_BLOCKS.register("haar_upsampling")(HaarUpsampling)
_BLOCKS.register("dsac")(DSACBlock)
_BLOCKS.register("lifting_downsampling")(LiftingDownsampling)
_BLOCKS.register("lifting_upsampling")(LiftingUpsampling)
_BLOCKS.register("additive_coupling")(AdditiveCouplingBlock)
_BLOCKS.register("invertible_unet")(InvertibleUNet)


def list_blocks(pattern: str = "*") -> list[str]:
    """Names of the registered blocks matching the shell-style ``pattern``."""
    return _BLOCKS.names(pattern)


def is_block(name: str) -> bool:
    """Whether ``name`` is a registered block."""
    return _BLOCKS.is_registered(name)


def get_block(name: str) -> BlockClass:
    """The block class registered as ``name`` (for ``SequenceINN.append``).

    Raises:
        UnknownNameError: For an unregistered name (the message lists close matches).
    """
    return _BLOCKS.get(name)


def create_block(name: str, dims_in: Sequence[tuple[int, ...]], **hparams: Any) -> InvertibleModule:
    """Build the block registered as ``name``; hyper-parameters that are ``None`` are dropped.

    Example:
        >>> block = create_block("haar_downsampling", [(3, 8, 8)])
        >>> block.output_dims([(3, 8, 8)])
        [(12, 4, 4)]
    """
    return _BLOCKS.create(name, dims_in, **hparams)


def register_block(name: str) -> Callable[[BlockClass], BlockClass]:
    """Decorator registering a FrEIA ``InvertibleModule`` class under ``name``.

    Raises:
        ValueError: If the name is taken.
    """
    return _BLOCKS.register(name)
