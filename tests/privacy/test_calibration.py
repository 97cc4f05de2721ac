"""Noise calibration and the partner's accountant, checked against Opacus itself."""

from __future__ import annotations

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from fedctr.privacy import (
    BudgetExceededError,
    DPSGDRound,
    InvalidPrivacyParameter,
    PartnerAccountant,
    PrivacyBudget,
    calibrate_noise_multiplier,
    poisson_schedule,
)


@pytest.mark.parametrize(
    ("epsilon", "rate", "steps"), [(8.0, 0.01, 500), (1.0, 0.02, 300), (3.0, 0.005, 2000)]
)
def test_calibrated_noise_spends_the_budget_but_not_more(epsilon, rate, steps) -> None:
    """sigma equals Opacus' own get_noise_multiplier, and Opacus' accountant confirms
    the resulting epsilon is at most the budget and within its tolerance of it."""
    budget = PrivacyBudget(epsilon=epsilon, delta=1e-5)
    sigma = calibrate_noise_multiplier(
        budget=budget, sample_rate=rate, total_steps=steps, accountant="rdp"
    )

    assert sigma == get_noise_multiplier(
        target_epsilon=epsilon, target_delta=1e-5, sample_rate=rate, steps=steps, accountant="rdp"
    )
    acc = RDPAccountant()
    acc.history = [(sigma, rate, steps)]
    spent = acc.get_epsilon(delta=1e-5)
    assert epsilon - 0.01 <= spent <= epsilon


def test_calibration_after_spending_covers_only_what_is_left() -> None:
    """With history, the new noise keeps history + remaining steps inside the budget."""
    budget = PrivacyBudget(epsilon=4.0, delta=1e-5)
    spent = [(1.2, 0.01, 200)]
    sigma = calibrate_noise_multiplier(
        budget=budget, sample_rate=0.01, total_steps=300, accountant="rdp", spent=spent
    )
    acc = RDPAccountant()
    acc.history = [*spent, (sigma, 0.01, 300)]

    assert 4.0 - 0.01 <= acc.get_epsilon(delta=1e-5) <= 4.0


def test_schedule_is_declared_not_counted() -> None:
    """Steps per round are ceil(local_epochs / q): no row count goes in."""
    assert poisson_schedule(sample_rate=0.25, local_epochs=2) == 8
    assert poisson_schedule(sample_rate=0.05, local_epochs=1) == 20
    assert poisson_schedule(sample_rate=0.3, local_epochs=1) == 4
    assert poisson_schedule(sample_rate=1.0, local_epochs=3) == 3
    for bad in ({"sample_rate": 0.0, "local_epochs": 1}, {"sample_rate": 0.1, "local_epochs": 0}):
        with pytest.raises(InvalidPrivacyParameter):
            poisson_schedule(**bad)


def test_budget_rejects_nonsense() -> None:
    for kwargs in (
        {"epsilon": 0, "delta": 1e-5},
        {"epsilon": float("nan"), "delta": 1e-5},
        {"epsilon": 1.0, "delta": 1.0},
        {"epsilon": True, "delta": 1e-5},
    ):
        with pytest.raises(InvalidPrivacyParameter):
            PrivacyBudget(**kwargs)


def test_accountant_refuses_a_release_that_would_exceed_the_budget() -> None:
    budget = PrivacyBudget(epsilon=2.0, delta=1e-5)
    acc = PartnerAccountant(kind="rdp")
    release = DPSGDRound(noise_multiplier=0.5, sample_rate=0.05, steps=500, max_grad_norm=1.0)

    assert acc.would_exceed(release, budget)
    with pytest.raises(BudgetExceededError, match="over the partner's budget"):
        acc.check(release, budget)
    assert acc.history == []  # refusing changes nothing


def test_accountant_state_round_trips_and_rejects_garbage() -> None:
    acc = PartnerAccountant(kind="prv", history=[(1.0, 0.01, 100)])
    again = PartnerAccountant.from_state_dict(acc.state_dict())

    assert again.history == acc.history and again.kind == "prv"
    from fedctr.privacy import AccountantStateError

    for bad in (
        {},
        {"schema_version": 1, "kind": "rdp", "history": [["x", 1, 2]]},
        {"schema_version": 2, "kind": "rdp", "history": []},
    ):
        with pytest.raises(AccountantStateError):
            PartnerAccountant.from_state_dict(bad)
