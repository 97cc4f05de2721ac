"""Privacy errors: each subclass means one thing."""

from fedctr.errors import FedctrError


class PrivacyError(FedctrError):
    """Base class of privacy-related errors."""


class InvalidPrivacyParameter(PrivacyError, ValueError):
    """A privacy parameter (epsilon, delta, noise, clipping, sampling) is out of range."""


class BudgetExceededError(PrivacyError):
    """Releasing this update would push the partner past its own (epsilon, delta) budget."""


class AccountingMismatchError(PrivacyError):
    """What the optimizer actually did differs from what the budget check approved."""


class AccountantStateError(PrivacyError, ValueError):
    """A stored accountant state is malformed or from another schema version."""


__all__ = [
    "AccountantStateError",
    "AccountingMismatchError",
    "BudgetExceededError",
    "InvalidPrivacyParameter",
    "PrivacyError",
]
