"""Skellam accounting for distributed DP: checked against the Gaussian it approaches,
and against the parts of the bound that must move the right way."""

from __future__ import annotations

import pytest
from opacus.accountants import RDPAccountant

from fedctr.privacy import PrivacyBudget
from fedctr.privacy.distributed import SkellamRound, calibrate, epsilon, sensitivities
from fedctr.privacy.distributed.noise import skellam_noise
from fedctr.privacy.randomness import SecureRandom

L2, L1 = sensitivities(unit_norm=2**16, dimension=600_000)


def _release(sigma: float, q: float = 1.0, shares: int = 3) -> SkellamRound:
    return SkellamRound(
        noise_multiplier=sigma,
        min_shares=shares,
        sample_rate=q,
        max_grad_norm=1.0,
        l2_sensitivity=L2,
        l1_sensitivity=L1,
    )


def _gaussian(sigma: float, q: float, steps: int) -> float:
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    return acc.get_epsilon(1e-5)


def test_without_sampling_skellam_costs_what_a_gaussian_of_the_same_variance_costs():
    eps = epsilon([_release(5.0)] * 50, 1e-5)
    assert _gaussian(5.0, 1.0, 50) <= eps <= 1.01 * _gaussian(5.0, 1.0, 50)


def test_with_sampling_the_general_bound_is_never_below_the_gaussian_one():
    for q, sigma, rounds in ((0.1, 1.0, 100), (0.01, 0.8, 1000)):
        eps = epsilon([_release(sigma, q)] * rounds, 1e-5)
        assert _gaussian(sigma, q, rounds) <= eps < 1.3 * _gaussian(sigma, q, rounds)


def test_rounding_inflates_the_sensitivity_by_the_square_root_of_the_dimension():
    l2, l1 = sensitivities(unit_norm=100.0, dimension=10_000)
    assert l2 == 200.0 and l1 == min(l2 * l2, 100.0 * l2)


def test_a_coalition_that_removes_its_shares_faces_less_noise():
    history = [_release(1.0, 0.1, shares=4)] * 50
    against = [epsilon(history, 1e-5, colluding=c) for c in range(4)]
    assert against == sorted(against) and against[3] > 2 * against[0]
    assert epsilon(history, 1e-5, colluding=10) == against[3]  # one share always remains


def test_calibration_spends_the_budget_and_no_more():
    budget = PrivacyBudget(epsilon=8.0, delta=1e-5)
    tuned = calibrate(budget=budget, rounds=100, template=_release(1.0, 0.1))
    eps = epsilon([tuned] * 100, 1e-5)
    assert 7.9 < eps <= 8.0 * (1 + 1e-9)
    spent = [tuned] * 40
    rest = calibrate(budget=budget, rounds=60, template=_release(1.0, 0.1), spent=spent)
    assert epsilon([*spent, *[rest] * 60], 1e-5) <= 8.0 * (1 + 1e-9)


def test_skellam_noise_has_the_variance_it_promises_and_is_integer():
    draws = skellam_noise(200_000, mu=50.0, rng=SecureRandom.from_key(bytes(32)))
    assert draws.dtype.kind == "i"
    assert abs(draws.mean()) < 0.1 and 95 < draws.var() < 105  # variance 2 mu


def test_shares_add_up_to_the_full_noise():
    rng = SecureRandom.from_key(bytes(32))
    total = sum(skellam_noise(100_000, mu=10.0, rng=rng) for _ in range(5))
    assert 95 < total.var() < 105  # five shares of Sk(10): Sk(50)


def test_a_release_is_one_step_and_refuses_bad_parameters():
    with pytest.raises(ValueError):
        SkellamRound(
            noise_multiplier=1.0,
            min_shares=0,
            sample_rate=0.1,
            max_grad_norm=1.0,
            l2_sensitivity=L2,
            l1_sensitivity=L1,
        )
