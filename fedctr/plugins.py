"""One registry for every kind of plug-in: models, strategies, DP-SGD implementations,
file formats, scoring kernels.

A plug-in registers itself under a name where it is defined, so adding one touches
one file; lookups of an unknown name fail with the kind's own domain error and the
names that would work. Plug-ins with options declare them as a frozen dataclass,
built from a config table by :func:`typed_config`, which names a key the plug-in
does not take instead of silently ignoring it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from typing import Any, Generic, TypeVar

from fedctr.errors import FedctrError

T = TypeVar("T")
C = TypeVar("C")


class DuplicatePluginError(FedctrError, ValueError):
    """Two plug-ins of one kind claim the same name (a programming error, seen at import)."""


class UnknownPluginError(FedctrError, LookupError):
    """No plug-in of this kind has the name; the default error of :meth:`Registry.get`."""


class Registry(Generic[T]):
    """Names to plug-ins of one ``kind`` (say ``"model"``), filled at import time."""

    def __init__(self, kind: str, *, error: Callable[[str], Exception] = UnknownPluginError):
        self.kind = kind
        self._error = error
        self._entries: dict[str, T] = {}

    def add(self, name: str, plugin: T) -> T:
        """Register ``plugin`` as ``name``; a name is taken once."""
        if name in self._entries:
            raise DuplicatePluginError(
                f"{self.kind} '{name}' is already registered by {self._entries[name]!r}"
            )
        self._entries[name] = plugin
        return plugin

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@REGISTRY.register("name")``."""

        def wrap(plugin: T) -> T:
            return self.add(name, plugin)

        return wrap

    def remove(self, name: str) -> T:
        """Unregister ``name`` (a plug-in registered for one test or one run)."""
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The plug-in registered as ``name``; else the kind's error listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise self._error(
                f"unknown {self.kind} '{name}'; choose one of {self.names()}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def option_names(config_type: type) -> frozenset[str]:
    """The options a plug-in's config dataclass takes (its ``__init__`` fields)."""
    return frozenset(f.name for f in fields(config_type) if f.init)


def typed_config(
    config_type: type[C],
    options: Mapping[str, Any],
    *,
    owner: str,
    error: Callable[[str], Exception],
) -> C:
    """``config_type(**options)``, where a key the type lacks is an ``error`` naming the
    key, ``owner`` (say ``"model 'lr'"``) and the options it does take."""
    taken = option_names(config_type)
    unknown = sorted(set(options) - taken)
    if unknown:
        raise error(
            f"{owner} has no option {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(sorted(taken)) or 'no options'}"
        )
    return config_type(**options)


__all__ = [
    "DuplicatePluginError",
    "Registry",
    "UnknownPluginError",
    "option_names",
    "typed_config",
]
