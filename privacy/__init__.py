"""Everything that decides or records privacy. Other packages ask here; they never
compute an epsilon themselves.

Names are resolved lazily: the scoring service needs ``privacy.signing`` but not
Opacus, whose import costs seconds per worker.
"""

from __future__ import annotations

import importlib
from typing import Any

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'privacy' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
