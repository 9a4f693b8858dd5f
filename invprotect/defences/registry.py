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
import re
from collections.abc import Callable
from typing import Any

from invprotect._registry import Registry
from invprotect.defences._base import Defence
from invprotect.defences.classic import (
    JPEG,
    BitDepth,
    GaussianBlur,
    GaussianNoise,
    Grayscale,
    MedianFilter,
    Resize,
)
from invprotect.defences.comdefend import comdefend_from_weights
from invprotect.defences.dipdefend import DIPDefend

DefenceFactory = Callable[..., Defence]
"""A callable building a defence from keyword arguments."""

_DEFENCES: Registry[DefenceFactory] = Registry("defence")
_DEFENCES.register("jpeg")(JPEG)
_DEFENCES.register("resize")(Resize)
_DEFENCES.register("gaussian_noise")(GaussianNoise)
_DEFENCES.register("median_filter")(MedianFilter)
_DEFENCES.register("gaussian_blur")(GaussianBlur)
_DEFENCES.register("grayscale")(Grayscale)
_DEFENCES.register("bit_depth")(BitDepth)
_DEFENCES.register("comdefend")(comdefend_from_weights)
_DEFENCES.register("dipdefend")(DIPDefend)


def list_defences(pattern: str = "*") -> list[str]:
    """Names of the registered defences matching the shell-style ``pattern``.

    Example:
        >>> list_defences("g*")
        ['gaussian_blur', 'gaussian_noise', 'grayscale']
    """
    return _DEFENCES.names(pattern)


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


def register_defence(name: str) -> Callable[[DefenceFactory], DefenceFactory]:
    """Decorator registering a defence class (or factory) under ``name``.

    Raises:
        ValueError: If the name is taken or invalid.
    """
    return _DEFENCES.register(name)


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _parse_value(text: str) -> Any:
    """A spec value: int, float, bool, ``none``, or a string (quotes force a string)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_defence_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into the name and typed keyword arguments.

    Values become ``int`` (``50``), ``float`` (``0.75``, ``1e-3``), ``bool``
    (``true``/``false``), ``None`` (``none``) or ``str`` (anything else; quote a value to
    keep it a string: ``name='50'``). The name is everything before the first ``:``.

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
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty defence spec {spec!r}; expected 'name' or 'name:key=value,...'")
    name, _, arguments = spec.strip().partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise ValueError(
            f"bad defence name {name!r} in spec {spec!r}; expected 'name' or 'name:key=value,...'"
        )
    kwargs: dict[str, Any] = {}
    if not arguments.strip():
        if ":" in spec:
            raise ValueError(f"defence spec {spec!r} has ':' but no key=value after it")
        return name, kwargs
    for item in arguments.split(","):
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not equals:
            raise ValueError(f"{item.strip()!r} in defence spec {spec!r} is not key=value")
        if not _KEY.match(key):
            raise ValueError(f"bad parameter name {key!r} in defence spec {spec!r}")
        if key in kwargs:
            raise ValueError(f"parameter {key!r} given twice in defence spec {spec!r}")
        if not value:
            raise ValueError(f"parameter {key!r} has no value in defence spec {spec!r}")
        kwargs[key] = _parse_value(value)
    return name, kwargs


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
