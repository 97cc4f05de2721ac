"""Registry of DP-SGD implementations, keyed by the name recorded in model cards."""

from __future__ import annotations

from collections.abc import Callable

from fedctr.plugins import Registry
from fedctr.privacy.dpsgd.base import DPSGDImplementation
from fedctr.privacy.errors import InvalidPrivacyParameter

IMPLEMENTATIONS: Registry[type[DPSGDImplementation]] = Registry(
    "DP-SGD implementation", error=InvalidPrivacyParameter
)


def register_implementation(
    name: str,
) -> Callable[[type[DPSGDImplementation]], type[DPSGDImplementation]]:
    """Class decorator registering a DP-SGD implementation; a name is registered once."""

    def wrap(cls: type[DPSGDImplementation]) -> type[DPSGDImplementation]:
        IMPLEMENTATIONS.add(name, cls)
        cls.name = name
        return cls

    return wrap


def available_implementations() -> tuple[str, ...]:
    return IMPLEMENTATIONS.names()


def get_implementation(name: str) -> DPSGDImplementation:
    """A fresh instance of the implementation registered as ``name``."""
    return IMPLEMENTATIONS.get(name)()


__all__ = [
    "IMPLEMENTATIONS",
    "available_implementations",
    "get_implementation",
    "register_implementation",
]
