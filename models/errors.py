"""Errors raised while reading a feature spec or building a model."""

from fedctr.errors import FedctrError


class FeatureSpecError(FedctrError, ValueError):
    """A feature spec file is unreadable, malformed or inconsistent."""


class SpecMismatchError(FedctrError, ValueError):
    """A model or artifact was made for a different feature spec than the one in use."""


class UnknownModelError(FedctrError, ValueError):
    """A model name is not registered."""


__all__ = ["FeatureSpecError", "SpecMismatchError", "UnknownModelError"]
