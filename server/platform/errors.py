"""Errors of the platform side."""

from fedctr.errors import FedctrError


class PlatformError(FedctrError):
    """Base class of platform errors."""


class PlatformConfigError(PlatformError, ValueError):
    """The platform's run configuration is missing, malformed or inconsistent."""


class NotEnoughPartnersError(PlatformError):
    """Too few partners contributed to aggregate or publish."""


class ResumeError(PlatformError):
    """A run cannot resume: its durable state is missing, changed or from another plan."""


__all__ = ["NotEnoughPartnersError", "PlatformConfigError", "PlatformError", "ResumeError"]
