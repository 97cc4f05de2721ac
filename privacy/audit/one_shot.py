"""One-shot empirical privacy estimation from canary clients (Andrew et al., ICLR 2024).

"One-shot Empirical Privacy Estimation for Federated Learning", arXiv 2302.03098;
reference code ``one_shot_epe/empirical_privacy_estimation_lib.py`` in
google-research/federated (read at commit a5af8c4433c9, 2024-02-20). ``k`` canary
clients each own a fixed random unit direction ``c_i`` in parameter space; when one
takes part in a round its update is ``c_i`` scaled to a typical update norm. After
training, the cosine between the final model delta ``theta_T - theta_0`` and each
inserted canary's direction is a statistic whose distribution is compared with that
of a direction the model never saw. For ``d`` parameters an unseen direction's cosine
is, very nearly, ``N(0, 1/d)`` (the paper's Section 4; exact for ``d -> infinity``,
the reference code switches to the normal approximation at ``d >= 1000``).

The estimate fits a Gaussian to the inserted canaries' cosines and reads off the
epsilon at which the two Gaussians (the fit and the null) are (epsilon, delta)-
indistinguishable: the smallest epsilon whose hockey-stick divergence, taken in both
directions, is at most delta. With equal variances this is the analytic Gaussian
mechanism of Balle & Wang (2018) with sensitivity/sigma = mean/std; with unequal
variances the privacy loss is quadratic in the observation and delta(epsilon) is
computed from the masses between or outside its roots (Steinke 2022, arXiv
2210.00597), then inverted numerically. This module follows the reference's
``_log_delta_two_gaussians`` / ``epsilon_two_gaussians``; the tests in
``tests/privacy/test_one_shot.py`` pin it to numbers computed with that file.

The "all iterates" variant replaces each canary's final cosine by its largest
per-round cosine ``max_t cos(theta_t - theta_{t-1}, c_i)``; the null is then no
longer ``N(0, 1/d)`` but the same maximum over the unseen canaries, so a Gaussian is
fitted to those as well (the reference keeps ``max_unseen_canary_model_delta_cosines``
for this).

This is an *estimate*, not a bound: no confidence level, and it is only as good as the
Gaussian fit. It says how much a client's whole update shows in what is released.
Directions are drawn from a seed and an index, so the auditor can regenerate them
rather than store ``k x d`` numbers. Nothing here has a default delta: an estimate at
another delta is another claim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from fedctr.privacy.errors import PrivacyError

# Below this dimension the cosine of an unseen direction is visibly not N(0, 1/d) (its
# support is [-1, 1]); the reference switches to the exact density there. fedctr models
# have tens of thousands of parameters at least, so smaller ones are refused.
MIN_ANALYTIC_DIM = 1000
_log_cdf = scipy.stats.norm.logcdf


class OneShotEstimateError(PrivacyError, ValueError):
    """Canary cosines, dimensions or delta from which no estimate can be made."""


def canary_direction(seed: int, index: int, dim: int) -> np.ndarray:
    """Canary ``index``'s unit direction in ``R^dim``, drawn from ``(seed, index)``.

    Uniform on the sphere (a normalized standard normal), as the reference draws it;
    inserted canaries and unseen ones use disjoint indices of one seed.
    """
    if dim < 1:
        raise OneShotEstimateError(f"a canary needs a positive dimension, got {dim}")
    v = np.random.default_rng([seed, index]).standard_normal(dim)
    return v / np.linalg.norm(v)


def cosines(vector: np.ndarray, seed: int, indices: Sequence[int]) -> np.ndarray:
    """``cos(vector, c_i)`` for each canary index (0 where ``vector`` is zero, as the
    reference's ``divide_no_nan``: a round that did not move the model shows nothing)."""
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        return np.zeros(len(indices))
    return (
        np.array([float(vector @ canary_direction(seed, i, vector.size)) for i in indices]) / norm
    )


def _log_delta(mu1: float, std1: float, mu2: float, std2: float, eps: float) -> float:
    """log of the hockey-stick divergence ``E_P[(1 - e^(eps - L))_+]`` with
    ``P = N(mu1, std1^2)``, ``Q = N(mu2, std2^2)`` and ``L = log p/q``.

    ``L(y) = a y^2 + b y + c``; ``delta = P(L > eps) - e^eps Q(L > eps)``, each mass
    taken in log space so that deltas far below 1e-300 and epsilons in the hundreds
    (a canary the aggregate shows plainly) stay finite.
    """
    a = 0.5 * (std2**-2 - std1**-2)
    b = mu1 / std1**2 - mu2 / std2**2
    c = 0.5 * ((mu2 / std2) ** 2 - (mu1 / std1) ** 2) + math.log(std2) - math.log(std1)
    if std1 == std2:
        if b == 0.0:
            return -math.inf  # the same distribution
        # L > eps  <=>  y > t for b > 0 (y < t for b < 0): P(Y > t) = Phi((mu - t) / std).
        t = (eps - c) / b
        sign = 1.0 if b > 0 else -1.0
        log_p = float(_log_cdf(sign * (mu1 - t) / std1))
        log_q = float(_log_cdf(sign * (mu2 - t) / std2))
    else:
        disc = b * b - 4 * a * (c - eps)
        if disc <= 0:
            return -math.inf  # L - eps has one sign everywhere: both masses 0 or both 1
        r1 = (-b - math.sqrt(disc)) / (2 * a)
        r2 = (-b + math.sqrt(disc)) / (2 * a)
        lo, hi = min(r1, r2), max(r1, r2)
        if a > 0:  # opens upward: L > eps outside the roots
            log_p = float(np.logaddexp(_log_cdf(lo, mu1, std1), _log_cdf(mu1, hi, std1)))
            log_q = float(np.logaddexp(_log_cdf(lo, mu2, std2), _log_cdf(mu2, hi, std2)))
        else:  # opens downward: between the roots
            log_p = _log_mass_between(lo, hi, mu1, std1)
            log_q = _log_mass_between(lo, hi, mu2, std2)
    factor = eps + log_q - log_p
    if factor >= 0 or log_p == -math.inf:
        return -math.inf
    return log_p + math.log1p(-math.exp(factor))


def _log_mass_between(lo: float, hi: float, mu: float, std: float) -> float:
    value, sign = scipy.special.logsumexp(
        [_log_cdf(hi, mu, std), _log_cdf(lo, mu, std)], b=[1, -1], return_sign=True
    )
    return float(value) if sign > 0 else -math.inf


def epsilon_two_gaussians(mu1: float, std1: float, mu2: float, std2: float, delta: float) -> float:
    """The smallest epsilon >= 0 at which ``N(mu1, std1^2)`` and ``N(mu2, std2^2)`` are
    (epsilon, delta)-indistinguishable, both ways round."""
    if not 0 < delta < 1:
        raise OneShotEstimateError(f"delta must be in (0, 1), got {delta}")
    if not (std1 > 0 and std2 > 0 and math.isfinite(std1) and math.isfinite(std2)):
        raise OneShotEstimateError(f"standard deviations must be positive, got {std1}, {std2}")
    if not (math.isfinite(mu1) and math.isfinite(mu2)):
        raise OneShotEstimateError(f"means must be finite, got {mu1}, {mu2}")

    def excess(eps: float) -> float:
        worst = max(_log_delta(mu1, std1, mu2, std2, eps), _log_delta(mu2, std2, mu1, std1, eps))
        return worst - math.log(delta)

    if excess(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while excess(hi) > 0:
        lo, hi = hi, hi * 10
        if hi > 1e12:
            return math.inf
    return float(scipy.optimize.brentq(excess, lo, hi, xtol=1e-10, rtol=1e-10))


@dataclass(frozen=True)
class OneShotEstimate:
    """An epsilon estimate and the two Gaussians it came from.

    ``null_count`` is 0 when the null is the analytic ``N(0, 1/dim)``; otherwise the
    number of unseen canaries its mean and std were fitted to.
    """

    epsilon: float
    delta: float
    mean: float
    std: float
    count: int
    null_mean: float
    null_std: float
    null_count: int
    dim: int

    @property
    def separation(self) -> float:
        """(mean - null mean) / null std: how many null standard deviations apart."""
        return (self.mean - self.null_mean) / self.null_std

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit(values: Sequence[float], what: str) -> tuple[float, float, int]:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        raise OneShotEstimateError(f"{what}: need at least 2 cosines to fit a Gaussian")
    if not np.isfinite(arr).all():
        raise OneShotEstimateError(f"{what}: cosines must be finite")
    std = float(arr.std(ddof=1))
    if std == 0.0:
        raise OneShotEstimateError(f"{what}: all {arr.size} cosines are equal; no Gaussian fits")
    return float(arr.mean()), std, int(arr.size)


def estimate_epsilon(
    inserted: Sequence[float], *, delta: float, dim: int, null: Sequence[float] | None = None
) -> OneShotEstimate:
    """Epsilon from inserted canaries' cosines against the unseen canaries' null.

    ``null=None``: the analytic null ``N(0, 1/dim)`` (the final-model estimate, the
    paper's main method; ``dim >= 1000``). ``null`` given: a Gaussian fitted to those
    unseen canaries' statistics (the all-iterates estimate, whose null is a maximum).
    """
    mean, std, count = _fit(inserted, "inserted canaries")
    if null is None:
        if dim < MIN_ANALYTIC_DIM:
            raise OneShotEstimateError(
                f"the N(0, 1/d) null needs d >= {MIN_ANALYTIC_DIM}, got d = {dim}"
            )
        null_mean, null_std, null_count = 0.0, dim**-0.5, 0
    else:
        null_mean, null_std, null_count = _fit(null, "unseen canaries")
    epsilon = epsilon_two_gaussians(null_mean, null_std, mean, std, delta)
    return OneShotEstimate(
        epsilon=epsilon,
        delta=delta,
        mean=mean,
        std=std,
        count=count,
        null_mean=null_mean,
        null_std=null_std,
        null_count=null_count,
        dim=dim,
    )


def null_floor(
    count: int, *, dim: int, delta: float, quantile: float = 0.95, trials: int = 200, seed: int = 0
) -> float:
    """The estimate that ``count`` canaries the model never saw reach by chance.

    A Gaussian fitted to a few dozen cosines gets the std wrong by several percent, and
    unequal variances alone make the privacy loss unbounded: at delta 1e-5, 50 pure-null
    cosines give a median estimate near 1.5 and a 95th percentile near 5. An estimate
    below this floor is indistinguishable from no signal; report it beside the estimate.
    Simulated (``trials`` draws of ``count`` from ``N(0, 1/dim)``), deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    std = dim**-0.5
    draws = [
        epsilon_two_gaussians(0.0, std, *_fit(rng.normal(0.0, std, count), "null")[:2], delta)
        for _ in range(trials)
    ]
    return float(np.quantile(draws, quantile))


__all__ = [
    "MIN_ANALYTIC_DIM",
    "OneShotEstimate",
    "OneShotEstimateError",
    "canary_direction",
    "cosines",
    "epsilon_two_gaussians",
    "estimate_epsilon",
    "null_floor",
]
