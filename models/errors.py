"""Errors raised while reading a feature spec or building a model."""

from fedctr.errors import FedctrError


class FeatureSpecError(FedctrError, ValueError):
    """A feature spec file is unreadable, malformed or inconsistent."""


class SpecMismatchError(FedctrError, ValueError):
    """A model or artifact was made for a different feature spec than the one in use."""


class UnknownModelError(FedctrError, ValueError):
    """A model name is not registered, or a model is given an option it does not take."""


class ModelConfigError(FedctrError, ValueError):
    """A model option has a value the model cannot be built with."""


__all__ = ["FeatureSpecError", "ModelConfigError", "SpecMismatchError", "UnknownModelError"]
