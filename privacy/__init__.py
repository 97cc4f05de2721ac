"""Everything that decides or records privacy. Other packages ask here; they never
compute an epsilon themselves.

Names are resolved lazily: the scoring service needs ``privacy.signing`` but not
Opacus, whose import costs seconds per worker.
"""

from __future__ import annotations

from fedctr.lazy import lazy_exports

_EXPORTS = {
    "PartnerAccountant": "privacy.accounting",
    "opacus_accountant": "privacy.accounting",
    "ACCOUNTANT_KINDS": "privacy.budget",
    "AccountantKind": "privacy.budget",
    "DPSGDRound": "privacy.budget",
    "PrivacyBudget": "privacy.budget",
    "calibrate_noise_multiplier": "privacy.calibration",
    "poisson_schedule": "privacy.calibration",
    "AccountantStateError": "privacy.errors",
    "AccountingMismatchError": "privacy.errors",
    "BudgetExceededError": "privacy.errors",
    "InvalidPrivacyParameter": "privacy.errors",
    "PrivacyError": "privacy.errors",
    "SecureRandom": "privacy.randomness",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
