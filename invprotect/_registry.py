"""One registry pattern for every kind of component (blocks, subnets, attacks, ...).

A `Registry` maps explicit names to factories. Registration refuses
duplicates, `Registry.create` drops keyword arguments that are ``None`` (so
a command line's unset options never override an entry's own defaults), and an
unknown name raises an error that lists the closest registered names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """Raised when a name is not in a registry; the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


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
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``.

        Raises:
            ValueError: If ``name`` is already registered or is not a valid name.
        """
        if not name or name != name.strip() or any(ch in name for ch in "*?[]"):
            raise ValueError(f"invalid {self.kind} name {name!r}: use letters, digits, '_' or '-'")

        def decorator(factory: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"a {self.kind} named {name!r} is already registered "
                    f"({self._entries[name].__qualname__}); choose another name"
                )
            self._entries[name] = factory
            return factory

        return decorator

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names of the entries that match the shell-style ``pattern``."""
        return sorted(name for name in self._entries if fnmatch.fnmatchcase(name, pattern))

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
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
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
