"""Errors of the model registry: each subclass means one thing.

Verification failures are deliberately opaque (one :class:`ArtifactTampered` for a
bad signature, a wrong key, a missing signature or weights that do not match the
signed hash): a caller probing an artifact learns only "does not verify". A card
that verifies but does not follow the card schema raises the card's own errors
(:class:`CardFormatError`, :class:`CardFieldError` of :mod:`fedctr.privacy.card`).
"""

from __future__ import annotations

from fedctr.errors import FedctrError
from fedctr.models.errors import SpecMismatchError
from fedctr.privacy.card import CardFieldError, CardFormatError


class RegistryError(FedctrError):
    """Base class of model-registry errors."""


class ArtifactNotFound(RegistryError, FileNotFoundError):
    """No registry, no ``LATEST`` pointer, or no artifact at the given path."""


class ArtifactTampered(RegistryError):
    """The artifact does not verify against the public key (opaque on purpose).

    Raised alike for a modified card or weights file, a missing or malformed
    signature, and a signature made by another key.
    """


__all__ = [
    "ArtifactNotFound",
    "ArtifactTampered",
    "CardFieldError",
    "CardFormatError",
    "RegistryError",
    "SpecMismatchError",
]
