"""Everything that decides or records privacy. Other packages ask here; they never
compute an epsilon themselves.

Names are resolved lazily: the scoring service needs ``fedctr.privacy.signing`` but not
Opacus, whose import costs seconds per worker.
"""

from __future__ import annotations

from fedctr.lazy import lazy_exports

_EXPORTS = {
    "PartnerAccountant": "fedctr.privacy.accounting",
    "opacus_accountant": "fedctr.privacy.accounting",
    "ACCOUNTANT_KINDS": "fedctr.privacy.budget",
    "AccountantKind": "fedctr.privacy.budget",
    "DPSGDRound": "fedctr.privacy.budget",
    "PrivacyBudget": "fedctr.privacy.budget",
    "calibrate_noise_multiplier": "fedctr.privacy.calibration",
    "poisson_schedule": "fedctr.privacy.calibration",
    "AccountantStateError": "fedctr.privacy.errors",
    "AccountingMismatchError": "fedctr.privacy.errors",
    "BudgetExceededError": "fedctr.privacy.errors",
    "InvalidPrivacyParameter": "fedctr.privacy.errors",
    "PrivacyError": "fedctr.privacy.errors",
    "SecureRandom": "fedctr.privacy.randomness",
    "PRIVACY_UNITS": "fedctr.privacy.unit",
    "PrivacyUnit": "fedctr.privacy.unit",
    "UnitOfPrivacy": "fedctr.privacy.unit",
    "group_privacy": "fedctr.privacy.unit",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
