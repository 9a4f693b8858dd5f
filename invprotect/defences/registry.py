"""The registry of defences, and the ``name:key=value,...`` specs the command line uses.

Every entry is a factory returning a `invprotect.defences.Defence`:

=================  ====================================================================
``jpeg``           real JPEG (``quality``, 1..100, default 50)
``resize``         down-and-up resizing (``scale`` in (0, 1], default 0.75; ``interpolation``)
``gaussian_noise`` additive noise (``sigma`` in 8-bit levels, default 8; ``seed``)
``median_filter``  median filter (``kernel_size``, odd, default 3)
``gaussian_blur``  Gaussian blur (``sigma`` > 0, default 1; ``kernel_size``)
``grayscale``      luminance replicated to RGB
``bit_depth``      colour-depth reduction (``bits``, 1..8, default 4)
``comdefend``      ComDefend; needs ``weights`` (a checkpoint directory)
``dipdefend``      DIPDefend (``max_iterations``, ``seed``, ...)
=================  ====================================================================
"""

from __future__ import annotations

import inspect
from typing import Any

# The defence modules register their entries where they define them; importing them here
# fills the registry.
from invprotect._registry import parse_spec
from invprotect.defences import classic, comdefend, dipdefend  # noqa: F401
from invprotect.defences._base import DEFENCES, Defence, DefenceFactory, register_defence

__all__ = [
    "DefenceFactory",
    "create_defence",
    "create_defence_from_spec",
    "defence_parameters",
    "is_defence",
    "list_defences",
    "parse_defence_spec",
    "register_defence",
]

_DEFENCES = DEFENCES


def list_defences(pattern: str = "*", *, tag: str | None = None) -> list[str]:
    """Names of the registered defences matching the shell-style ``pattern`` (and ``tag``).

    Tags: ``"slow"`` (an optimisation per image) and ``"trainable"`` (trained by
    ``invprotect train-defence``).

    Example:
        >>> list_defences("g*")
        ['gaussian_blur', 'gaussian_noise', 'grayscale']
        >>> list_defences(tag="slow"), list_defences(tag="trainable")
        (['dipdefend'], ['comdefend'])
    """
    return _DEFENCES.names(pattern, tag=tag)


def is_defence(name: str) -> bool:
    """Whether ``name`` is a registered defence."""
    return _DEFENCES.is_registered(name)


def defence_parameters(name: str) -> dict[str, Any]:
    """The keyword parameters of the defence ``name`` with their defaults.

    A parameter without a default maps to ``inspect.Parameter.empty``.

    Raises:
        UnknownNameError: For an unregistered name (the message lists close matches).
    """
    signature = inspect.signature(_DEFENCES.get(name))
    return {
        key: parameter.default
        for key, parameter in signature.parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }


def create_defence(name: str, **kwargs: Any) -> Defence:
    """Build the defence registered as ``name``; keyword arguments that are ``None`` are dropped.

    Raises:
        UnknownNameError: For an unregistered name (the message lists close matches).
        ValueError: For a keyword the defence does not take, or an out-of-range value.

    Example:
        >>> create_defence("jpeg", quality=90)
        JPEG(quality=90)
    """
    accepted = defence_parameters(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"defence {name!r} takes no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted) or 'nothing'}"
        )
    return _DEFENCES.create(name, **kwargs)


def parse_defence_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into the name and typed keyword arguments.

    The package's one spec grammar (`invprotect._registry.parse_spec`). Values become
    ``int`` (``50``), ``float`` (``0.75``, ``1e-3``), ``bool`` (``true``/``false``),
    ``None`` (``none``) or ``str`` (anything else; quote a value to keep it a string:
    ``name='50'``). The name is everything before the first ``:``.

    Raises:
        ValueError: For an empty or malformed spec, an item without ``=``, a bad key,
            or a key given twice.

    Example:
        >>> parse_defence_spec("jpeg:quality=50,foo=1")
        ('jpeg', {'quality': 50, 'foo': 1})
        >>> parse_defence_spec("resize:scale=0.75,interpolation=bicubic")
        ('resize', {'scale': 0.75, 'interpolation': 'bicubic'})
        >>> parse_defence_spec("grayscale")
        ('grayscale', {})
    """
    return parse_spec(spec, "defence")


def create_defence_from_spec(spec: str) -> Defence:
    """Build a defence from a ``"name:key=value,..."`` spec (see `parse_defence_spec`).

    Raises:
        UnknownNameError: For an unregistered name.
        ValueError: For a malformed spec, an unknown parameter or an out-of-range value.

    Example:
        >>> create_defence_from_spec("median_filter:kernel_size=5")
        MedianFilter(kernel_size=5)
    """
    name, kwargs = parse_defence_spec(spec)
    return create_defence(name, **kwargs)
