"""The one-shot estimator (Andrew et al. 2024): known Gaussians give the known epsilon.

Golden numbers were computed with ``one_shot_epe/empirical_privacy_estimation_lib.py``
of google-research/federated (commit a5af8c4433c9) run on the same inputs; 200 random
(mu1, std1, mu2, std2, delta) agreed to a relative 4e-11 when the module was written.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from fedctr.privacy.audit.one_shot import (
    OneShotEstimateError,
    canary_direction,
    cosines,
    epsilon_two_gaussians,
    estimate_epsilon,
    null_floor,
)


def _analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Balle & Wang 2018, Thm 8: N(0,1) vs N(mu,1) is (eps, delta)-DP iff
    Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu) <= delta. Solved independently here."""
    phi = scipy.stats.norm.cdf

    def excess(eps: float) -> float:
        return phi(mu / 2 - eps / mu) - math.exp(eps) * phi(-mu / 2 - eps / mu) - delta

    return scipy.optimize.brentq(excess, 0.0, 200.0, xtol=1e-12)


@pytest.mark.parametrize(
    ("mu", "delta"), [(0.5, 1e-2), (1.0, 1e-5), (2.0, 1e-5), (4.0, 1e-6), (3.0, 1e-3)]
)
def test_equal_variances_are_the_analytic_gaussian_mechanism(mu: float, delta: float) -> None:
    expected = _analytic_gaussian_epsilon(mu, delta)
    assert epsilon_two_gaussians(0.0, 1.0, mu, 1.0, delta) == pytest.approx(expected, rel=1e-7)
    # only mean/std matters: the cosine scale of a 200k-parameter model gives the same
    s = 200_000**-0.5
    assert epsilon_two_gaussians(0.0, s, mu * s, s, delta) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("args", "golden"),
    [
        ((0.0, 1.0, 1.0, 1.0, 1e-5), 4.377178095681137),
        ((0.0, 1.0, 2.0, 1.5, 1e-5), 24.955564048664858),
        ((0.0, 1.0, 2.0, 0.5, 1e-5), 67.80314479081147),
        ((1.0, 0.3, 0.2, 0.7, 1e-3), 42.23251473415322),
        ((0.0, 0.0023, 0.0001, 0.0023, 1e-5), 0.1373884496456678),
    ],
)
def test_matches_the_reference_implementation(args: tuple, golden: float) -> None:
    assert epsilon_two_gaussians(*args) == pytest.approx(golden, rel=1e-8)


def test_unequal_variances_hold_delta_by_monte_carlo() -> None:
    """At the returned epsilon the worse direction's hockey-stick divergence is delta."""
    rng = np.random.default_rng(5)
    mu1, s1, mu2, s2, delta = 0.0, 1.0, 1.5, 1.6, 0.05
    eps = epsilon_two_gaussians(mu1, s1, mu2, s2, delta)
    lp = scipy.stats.norm.logpdf
    worst = 0.0
    for (ma, sa), (mb, sb) in [((mu1, s1), (mu2, s2)), ((mu2, s2), (mu1, s1))]:
        y = rng.normal(ma, sa, 1_000_000)
        loss = lp(y, ma, sa) - lp(y, mb, sb)
        worst = max(worst, float(np.mean(np.maximum(0.0, 1 - np.exp(eps - loss)))))
    assert worst == pytest.approx(delta, abs=2e-3)


def test_more_separation_gives_larger_epsilon() -> None:
    eps = [epsilon_two_gaussians(0.0, 1.0, mu, 1.0, 1e-5) for mu in (0.25, 0.5, 1, 2, 4, 8)]
    assert np.all(np.diff(eps) > 0)
    assert eps[0] > 0


def test_identical_gaussians_give_zero() -> None:
    assert epsilon_two_gaussians(0.0, 1.0, 0.0, 1.0, 1e-5) == 0.0


def test_zero_signal_gives_about_zero() -> None:
    """Cosines of directions the model never saw, against the analytic N(0, 1/d) null."""
    dim = 20_000
    rng = np.random.default_rng(11)
    delta_model = rng.standard_normal(dim)
    unseen = cosines(delta_model, seed=3, indices=range(400))
    est = estimate_epsilon(unseen, delta=1e-5, dim=dim)
    assert est.std == pytest.approx(dim**-0.5, rel=0.15)
    assert est.epsilon < 0.6


def test_an_inserted_canary_shows_and_an_unseen_one_does_not() -> None:
    """A model delta that contains k canaries at a real update's norm: large epsilon;
    the same delta against k fresh directions: no more than the estimator's noise floor
    for k canaries (a fitted std off by a few percent is worth an epsilon of 1-3 at
    delta 1e-5; see test_noise_floor_shrinks_with_more_canaries)."""
    dim, k = 20_000, 200
    rng = np.random.default_rng(2)
    delta_model = 3.0 * rng.standard_normal(dim) / math.sqrt(dim)
    for i in range(k):
        delta_model += 0.5 * canary_direction(7, i, dim)
    inserted = cosines(delta_model, 7, range(k))
    unseen = cosines(delta_model, 7, range(k, 2 * k))
    seen_est = estimate_epsilon(inserted, delta=1e-5, dim=dim)
    unseen_est = estimate_epsilon(unseen, delta=1e-5, dim=dim)
    assert seen_est.separation > 5
    assert seen_est.epsilon > 20
    assert unseen_est.epsilon < null_floor(k, dim=dim, delta=1e-5)
    # the empirical null (all-iterates form) agrees that the inserted ones stand out
    assert estimate_epsilon(inserted, delta=1e-5, dim=dim, null=unseen).epsilon > 20


def test_noise_floor_shrinks_with_more_canaries() -> None:
    floors = [null_floor(k, dim=50_000, delta=1e-5) for k in (20, 100, 1000)]
    assert floors[0] > floors[1] > floors[2] > 0
    assert floors[2] < 1.0


def test_directions_are_unit_reproducible_and_distinct() -> None:
    a, b = canary_direction(1, 0, 5000), canary_direction(1, 0, 5000)
    assert np.array_equal(a, b)
    assert np.linalg.norm(a) == pytest.approx(1.0)
    assert abs(float(a @ canary_direction(1, 1, 5000))) < 0.1
    assert np.array_equal(cosines(np.zeros(10), 1, [0, 1]), np.zeros(2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inserted": [0.1], "dim": 5000}, "at least 2"),
        ({"inserted": [0.1, 0.1], "dim": 5000}, "equal"),
        ({"inserted": [0.1, 0.2], "dim": 500}, "d >= 1000"),
        ({"inserted": [0.1, math.nan], "dim": 5000}, "finite"),
        ({"inserted": [0.1, 0.2], "dim": 5000, "null": [0.0]}, "unseen"),
    ],
)
def test_unusable_input_is_a_domain_error(kwargs: dict, message: str) -> None:
    with pytest.raises(OneShotEstimateError, match=message):
        estimate_epsilon(delta=1e-5, **kwargs)
    with pytest.raises(OneShotEstimateError, match="delta"):
        epsilon_two_gaussians(0, 1, 1, 1, 0.0)
