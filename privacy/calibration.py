"""Noise calibration: the one place a noise multiplier is derived from a budget."""

from __future__ import annotations

import math
from collections.abc import Sequence

from opacus.accountants import create_accountant
from opacus.accountants.utils import MAX_SIGMA, get_noise_multiplier

from fedctr.privacy.budget import ACCOUNTANT_KINDS, AccountantKind, PrivacyBudget
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.validate import Checker

_CHECK = Checker(InvalidPrivacyParameter)


def poisson_schedule(*, sample_rate: float, local_epochs: int) -> int:
    """Steps of one round: ``ceil(local_epochs / sample_rate)`` Poisson-sampled steps.

    Both inputs are declared in the partner's config, never derived from its row
    count, so the steps (and the epsilon they cost) are public by declaration. An
    "epoch" is ``1 / sample_rate`` steps: each row is expected in one batch per epoch.
    """
    _CHECK.rate(sample_rate, "sample_rate")
    _CHECK.integer(local_epochs, "local_epochs", minimum=1)
    return math.ceil(local_epochs / sample_rate - 1e-9)


def calibrate_noise_multiplier(
    *,
    budget: PrivacyBudget,
    sample_rate: float,
    total_steps: int,
    accountant: AccountantKind,
    spent: Sequence[tuple[float, float, int]] = (),
    epsilon_tolerance: float = 0.01,
) -> float:
    """Smallest noise multiplier (within tolerance) that keeps ``total_steps`` steps at
    rate ``sample_rate`` inside ``budget`` under ``accountant``.

    ``total_steps`` covers every round the partner plans to join, so the per-round
    budget check can admit exactly those rounds. ``spent`` is the accountant history
    of earlier releases (noise, rate, steps): when it is non-empty the new noise is
    calibrated for what is left of the budget.
    """
    if accountant not in ACCOUNTANT_KINDS:
        raise InvalidPrivacyParameter(f"accountant must be one of {ACCOUNTANT_KINDS}")
    if total_steps <= 0:
        raise InvalidPrivacyParameter("total_steps must be positive")
    if spent:
        return _calibrate_after(
            budget=budget,
            sample_rate=sample_rate,
            total_steps=total_steps,
            accountant=accountant,
            spent=list(spent),
            epsilon_tolerance=epsilon_tolerance,
        )
    try:
        return float(
            get_noise_multiplier(
                target_epsilon=budget.epsilon,
                target_delta=budget.delta,
                sample_rate=sample_rate,
                steps=total_steps,
                accountant=accountant,
                epsilon_tolerance=epsilon_tolerance,
            )
        )
    except ValueError as exc:
        raise InvalidPrivacyParameter(
            f"cannot reach epsilon={budget.epsilon}, delta={budget.delta} with "
            f"{total_steps} steps at sample rate {sample_rate:.4g}: {exc} "
            "Raise epsilon, plan fewer rounds or local epochs, or use larger batches."
        ) from exc


__all__ = ["calibrate_noise_multiplier", "poisson_schedule"]


def _calibrate_after(
    *,
    budget: PrivacyBudget,
    sample_rate: float,
    total_steps: int,
    accountant: AccountantKind,
    spent: list[tuple[float, float, int]],
    epsilon_tolerance: float,
) -> float:
    """Bisection like Opacus' ``get_noise_multiplier``, with earlier releases composed in."""

    def eps(sigma: float) -> float:
        acc = create_accountant(mechanism=accountant)
        acc.history = [*spent, (sigma, sample_rate, total_steps)]
        return float(acc.get_epsilon(delta=budget.delta))

    low, high = 0.0, 10.0
    while eps(high) > budget.epsilon:
        high *= 2
        if high > MAX_SIGMA:
            raise InvalidPrivacyParameter(
                f"the remaining budget (epsilon={budget.epsilon}, delta={budget.delta}) cannot "
                f"cover {total_steps} more steps: earlier rounds spent it"
            )
    while True:
        mid = (low + high) / 2
        e = eps(mid)
        if e < budget.epsilon:
            high = mid
            if budget.epsilon - e <= epsilon_tolerance:
                return high
        else:
            low = mid
