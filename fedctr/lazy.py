"""Package names resolved on first use (PEP 562), for packages whose members are
expensive or order-sensitive to import (Opacus; numpy before BLAS limits are set)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps name -> module.

    A resolved name is cached in the package, so the import happens once.
    """
    namespace = sys.modules[package].__dict__

    def resolve(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def listing() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return resolve, listing


__all__ = ["lazy_exports"]
