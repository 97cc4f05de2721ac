"""Registry of DP-SGD implementations, keyed by the name recorded in model cards."""

from __future__ import annotations

from collections.abc import Callable

from fedctr.privacy.dpsgd.base import DPSGDImplementation
from fedctr.privacy.errors import InvalidPrivacyParameter

_IMPLEMENTATIONS: dict[str, type[DPSGDImplementation]] = {}


def register_implementation(
    name: str,
) -> Callable[[type[DPSGDImplementation]], type[DPSGDImplementation]]:
    """Class decorator registering a DP-SGD implementation; duplicates are an error."""

    def wrap(cls: type[DPSGDImplementation]) -> type[DPSGDImplementation]:
        if name in _IMPLEMENTATIONS:
            raise ValueError(f"DP-SGD implementation '{name}' is already registered")
        cls.name = name
        _IMPLEMENTATIONS[name] = cls
        return cls

    return wrap


def available_implementations() -> tuple[str, ...]:
    return tuple(sorted(_IMPLEMENTATIONS))


def get_implementation(name: str) -> DPSGDImplementation:
    """A fresh instance of the implementation registered as ``name``."""
    try:
        return _IMPLEMENTATIONS[name]()
    except KeyError:
        raise InvalidPrivacyParameter(
            f"unknown DP-SGD implementation '{name}'; choose one of {available_implementations()}"
        ) from None


__all__ = ["available_implementations", "get_implementation", "register_implementation"]
