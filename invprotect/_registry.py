"""One registry pattern for every kind of component (blocks, subnets, attacks, ...).

A `Registry` maps explicit names to factories. Registration refuses
duplicates, `Registry.create` drops keyword arguments that are ``None`` (so
a command line's unset options never override an entry's own defaults), and an
unknown name raises an error that lists the closest registered names. An entry can
carry tags (``"slow"``, ``"trainable"``, ...), so that no side table lists entries
again.

`Presets` is the same pattern for named configurations of one type (the presets of
RAEG, the U-Net and ComDefend), and `parse_spec` reads the one command-line grammar
for an entry with settings, ``name:key=value,...``.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])
C = TypeVar("C")


class UnknownNameError(KeyError):
    """Raised when a name is not in a registry; the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownPresetError(UnknownNameError, ValueError):
    """Raised for a preset name that `Presets` does not hold (a `KeyError` and a `ValueError`)."""


def _check_name(kind: str, name: str) -> None:
    if (
        not isinstance(name, str)
        or not name
        or name != name.strip()
        or any(ch in name for ch in "*?[]")
    ):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '_' or '-'")


def _close_matches(name: object, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(names), n=3, cutoff=0.5)
    return f"did you mean {', '.join(map(repr, close))}? " if close else ""


class Registry(Generic[T]):
    """Named factories of one kind.

    Args:
        kind: What the entries are, used in error messages (for example ``"block"``).

    Example:
        >>> widgets = Registry("widget")
        >>> @widgets.register("round")
        ... def make_round(size: int = 1) -> str:
        ...     return f"round-{size}"
        >>> widgets.create("round", size=None)
        'round-1'
        >>> widgets.names()
        ['round']
        >>> @widgets.register("square", tags=("slow",))
        ... def make_square() -> str:
        ...     return "square"
        >>> widgets.names(tag="slow"), widgets.tags("square")
        (['square'], frozenset({'slow'}))
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._tags: dict[str, frozenset[str]] = {}

    def register(self, name: str, *, tags: Iterable[str] = ()) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``.

        Args:
            name: The entry's name.
            tags: Labels of the entry (``"slow"``, ``"trainable"``, ...), listed by
                `names` with ``tag=`` and returned by `tags`.

        Raises:
            ValueError: If ``name`` is already registered or is not a valid name, or a
                tag is not a non-empty string.
        """
        _check_name(self.kind, name)
        labels = frozenset(tags)
        if any(not isinstance(tag, str) or not tag for tag in labels):
            raise ValueError(f"tags of {self.kind} {name!r} must be non-empty strings: {tags!r}")

        def decorator(factory: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"a {self.kind} named {name!r} is already registered "
                    f"({self._entries[name].__qualname__}); choose another name"
                )
            self._entries[name] = factory
            self._tags[name] = labels
            return factory

        return decorator

    def names(self, pattern: str = "*", *, tag: str | None = None) -> list[str]:
        """Sorted names of the entries that match the shell-style ``pattern`` and carry ``tag``."""
        return sorted(
            name
            for name in self._entries
            if fnmatch.fnmatchcase(name, pattern) and (tag is None or tag in self.tags(name))
        )

    def tags(self, name: str) -> frozenset[str]:
        """The tags of the entry ``name``.

        Raises:
            UnknownNameError: If no entry has that name.
        """
        self.get(name)
        return self._tags.get(name, frozenset())

    def is_registered(self, name: str) -> bool:
        """Whether ``name`` is a registered entry."""
        return name in self._entries

    def get(self, name: str) -> T:
        """The factory registered under ``name``.

        Raises:
            UnknownNameError: If no entry has that name; the message lists close matches.
        """
        try:
            return self._entries[name]
        except KeyError:
            hint = _close_matches(name, self._entries)
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; {hint}registered: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered as ``name``, dropping ``None`` keyword arguments."""
        factory = self.get(name)
        return factory(*args, **{key: value for key, value in kwargs.items() if value is not None})

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class Presets(Mapping[str, C]):
    """Named, validated configurations of one type: a registry of configs.

    A read-only mapping from a preset name to its config, in the order the presets were
    added. Adding checks the name and the config's type and refuses duplicates; looking
    up an unknown name raises `UnknownPresetError`, whose message is the one "unknown
    preset" message of the package.

    Args:
        kind: What the presets configure, for messages (for example ``"RAEG"``).
        config_type: The type every config must have (a frozen dataclass, usually, whose
            constructor validates its fields).
        presets: The initial presets.

    Example:
        >>> sizes = Presets("widget", int, {"small": 1, "large": 9})
        >>> sizes["small"], list(sizes)
        (1, ['small', 'large'])
        >>> sizes["smal"]
        Traceback (most recent call last):
        ...
        invprotect._registry.UnknownPresetError: unknown preset 'smal' of widget; did you mean \
'small'? choose one of ['large', 'small']
    """

    def __init__(
        self, kind: str, config_type: type[C], presets: Mapping[str, C] | None = None
    ) -> None:
        self.kind = kind
        self.config_type = config_type
        self._presets: dict[str, C] = {}
        for name, config in (presets or {}).items():
            self.add(name, config)

    def add(self, name: str, config: C) -> C:
        """Add the preset ``name``; return its config.

        Raises:
            ValueError: If the name is invalid or taken.
            TypeError: If ``config`` is not a ``config_type``.
        """
        _check_name(f"{self.kind} preset", name)
        if name in self._presets:
            raise ValueError(f"a {self.kind} preset named {name!r} already exists")
        if not isinstance(config, self.config_type):
            raise TypeError(
                f"{self.kind} preset {name!r} must be a {self.config_type.__name__}, "
                f"got {type(config).__name__}"
            )
        self._presets[name] = config
        return config

    def __getitem__(self, name: str) -> C:
        try:
            return self._presets[name]
        except (KeyError, TypeError):
            hint = _close_matches(name, self._presets)
            raise UnknownPresetError(
                f"unknown preset {name!r} of {self.kind}; {hint}"
                f"choose one of {sorted(self._presets)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._presets

    def __iter__(self) -> Iterator[str]:
        return iter(self._presets)

    def __len__(self) -> int:
        return len(self._presets)

    def __repr__(self) -> str:
        return f"Presets({self.kind!r}, {self.config_type.__name__}, {list(self._presets)})"


_SPEC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SPEC_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_spec_value(text: str) -> Any:
    """A spec value: int, float, bool, ``none``, or a string (quotes force a string).

    Example:
        >>> texts = ("50", "0.75", "true", "none", "bicubic", "'50'")
        >>> tuple(parse_spec_value(text) for text in texts)
        (50, 0.75, True, None, 'bicubic', '50')
    """
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


def parse_spec(spec: str, kind: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into the name and typed keyword arguments.

    The one grammar of the command line for a registry entry with settings. Values
    become ``int``, ``float``, ``bool``, ``None`` or ``str`` (see `parse_spec_value`);
    the name is everything before the first ``:``.

    Args:
        spec: The text to parse.
        kind: What the spec names (``"defence"``, ...), for messages.

    Raises:
        ValueError: For an empty or malformed spec, an item without ``=``, a bad key,
            or a key given twice.

    Example:
        >>> parse_spec("jpeg:quality=50", "defence")
        ('jpeg', {'quality': 50})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty {kind} spec {spec!r}; expected 'name' or 'name:key=value,...'")
    name, _, arguments = spec.strip().partition(":")
    name = name.strip()
    if not _SPEC_NAME.match(name):
        raise ValueError(
            f"bad {kind} name {name!r} in spec {spec!r}; expected 'name' or 'name:key=value,...'"
        )
    kwargs: dict[str, Any] = {}
    if not arguments.strip():
        if ":" in spec:
            raise ValueError(f"{kind} spec {spec!r} has ':' but no key=value after it")
        return name, kwargs
    for item in arguments.split(","):
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not equals:
            raise ValueError(f"{item.strip()!r} in {kind} spec {spec!r} is not key=value")
        if not _SPEC_KEY.match(key):
            raise ValueError(f"bad parameter name {key!r} in {kind} spec {spec!r}")
        if key in kwargs:
            raise ValueError(f"parameter {key!r} given twice in {kind} spec {spec!r}")
        if not value:
            raise ValueError(f"parameter {key!r} has no value in {kind} spec {spec!r}")
        kwargs[key] = parse_spec_value(value)
    return name, kwargs
