"""Secure-aggregation errors: each subclass means one thing."""

from fedctr.privacy.errors import PrivacyError


class SecAggError(PrivacyError):
    """Base class of secure-aggregation errors."""


class SecAggRefused(SecAggError):
    """A partner refuses a secure-aggregation request that would weaken its protection
    (threshold too low, a node asked to reveal both secrets of a neighbour, ...)."""


class SecAggAbort(SecAggError):
    """The platform cannot unmask this round's sum (too few survivors or valid shares);
    the round is not aggregated."""


__all__ = ["SecAggAbort", "SecAggError", "SecAggRefused"]
