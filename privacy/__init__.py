"""Everything that decides or records privacy. Other packages ask here; they never
compute an epsilon themselves."""

from privacy.accounting import PartnerAccountant, opacus_accountant
from privacy.budget import ACCOUNTANT_KINDS, AccountantKind, DPSGDRound, PrivacyBudget
from privacy.calibration import calibrate_noise_multiplier, poisson_schedule
from privacy.errors import (
    AccountantStateError,
    AccountingMismatchError,
    BudgetExceededError,
    InvalidPrivacyParameter,
    PrivacyError,
)

__all__ = [
    "ACCOUNTANT_KINDS",
    "AccountantKind",
    "AccountantStateError",
    "AccountingMismatchError",
    "BudgetExceededError",
    "DPSGDRound",
    "InvalidPrivacyParameter",
    "PartnerAccountant",
    "PrivacyBudget",
    "PrivacyError",
    "calibrate_noise_multiplier",
    "opacus_accountant",
    "poisson_schedule",
]
