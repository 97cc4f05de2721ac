"""Errors of the model registry: each subclass means one thing.

Verification failures are deliberately opaque (one :class:`ArtifactTampered` for a
bad signature, a wrong key, a missing signature or weights that do not match the
signed hash): a caller probing an artifact learns only "does not verify".
"""

from __future__ import annotations

from fedctr.models.errors import SpecMismatchError

from fedctr.errors import FedctrError


class RegistryError(FedctrError):
    """Base class of model-registry errors."""


class ArtifactNotFound(RegistryError, FileNotFoundError):
    """No registry, no ``LATEST`` pointer, or no artifact at the given path."""


class ArtifactTampered(RegistryError):
    """The artifact does not verify against the public key (opaque on purpose).

    Raised alike for a modified card or weights file, a missing or malformed
    signature, and a signature made by another key.
    """


class CardFormatError(RegistryError, ValueError):
    """A signed card is authentic but of a format this fedctr cannot read."""


class CardFieldError(RegistryError, ValueError):
    """A model-card field given to the publisher is missing, out of range or not JSON."""


__all__ = [
    "ArtifactNotFound",
    "ArtifactTampered",
    "CardFieldError",
    "CardFormatError",
    "RegistryError",
    "SpecMismatchError",
]
