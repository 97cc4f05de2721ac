"""DP-SGD implementations behind one seam; see :mod:`privacy.dpsgd.base`."""

from privacy.dpsgd import opacus_impl  # noqa: F401  (registers opacus-hooks, opacus-ghost)
from privacy.dpsgd.base import DPSGDImplementation, PrivateTraining
from privacy.dpsgd.registry import (
    available_implementations,
    get_implementation,
    register_implementation,
)

DEFAULT_IMPLEMENTATION = "opacus-ghost"

__all__ = [
    "DEFAULT_IMPLEMENTATION",
    "DPSGDImplementation",
    "PrivateTraining",
    "available_implementations",
    "get_implementation",
    "register_implementation",
]
