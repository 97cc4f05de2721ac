"""The one over-budget comparison: spending exactly the budget is allowed, just over is not."""

from __future__ import annotations

import math

import pytest

from fedctr.privacy import BudgetExceededError, DPSGDRound, PartnerAccountant, PrivacyBudget
from fedctr.privacy.budget import BUDGET_REL_TOL

BUDGET = PrivacyBudget(epsilon=2.0, delta=1e-5)


def test_exactly_at_the_budget_is_allowed() -> None:
    assert not BUDGET.exceeded_by(2.0)
    assert not BUDGET.exceeded_by(0.0)


def test_floating_point_noise_at_the_edge_is_allowed() -> None:
    assert not BUDGET.exceeded_by(2.0 * (1 + BUDGET_REL_TOL))


def test_just_over_the_tolerance_is_refused() -> None:
    edge = 2.0 * (1 + BUDGET_REL_TOL)
    assert BUDGET.exceeded_by(math.nextafter(edge, math.inf))
    assert BUDGET.exceeded_by(2.0 * (1 + 10 * BUDGET_REL_TOL))


def test_an_auditor_may_ask_with_its_own_tolerance() -> None:
    assert not BUDGET.exceeded_by(2.02, rel_tol=0.01)
    assert BUDGET.exceeded_by(2.03, rel_tol=0.01)


@pytest.mark.parametrize("kind", ["rdp", "prv"])
def test_the_accountant_admits_a_round_spending_exactly_the_budget(kind: str) -> None:
    release = DPSGDRound(noise_multiplier=1.0, sample_rate=0.05, steps=100, max_grad_norm=1.0)
    spend = PartnerAccountant(kind=kind).epsilon_after(release, 1e-5)

    exact = PrivacyBudget(epsilon=spend, delta=1e-5)
    acc = PartnerAccountant(kind=kind)
    assert not acc.would_exceed(release, exact)
    assert acc.check(release, exact) == spend

    short = PrivacyBudget(epsilon=spend / (1 + 10 * BUDGET_REL_TOL), delta=1e-5)
    assert acc.would_exceed(release, short)
    with pytest.raises(BudgetExceededError, match="over the partner's budget"):
        acc.check(release, short)
