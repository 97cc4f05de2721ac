"""Renyi-DP accounting of distributed (Skellam) releases.

Per release: the multidimensional Skellam mechanism with L2 / L1 sensitivities
``l2`` / ``l1`` and noise ``Sk(mu, mu)`` on every coordinate is
``(alpha, eps(alpha))``-RDP with (Agarwal, Kairouz & Liu, NeurIPS 2021, Thm. 3.5)::

    eps(alpha) = alpha l2^2 / (4 mu) + min(((2 alpha - 1) l2^2 + 6 l1) / (16 mu^2),
                                           3 l1 / (4 mu))

(the Gaussian term with variance ``2 mu``, plus a small discrete correction).
Poisson sampling at rate ``q`` is amplified with the general bound of Zhu & Wang
(ICML 2019, Thm. 6), valid for any mechanism under add/remove-one, at integer
orders::

    eps_q(a) = 1/(a-1) log[ (1-q)^(a-1) (1 + (a-1) q) + C(a,2) q^2 (1-q)^(a-2) e^eps(2)
                            + 3 sum_{l=3..a} C(a,l) q^l (1-q)^(a-l) e^((l-1) eps(l)) ]

Releases compose by adding RDP; (eps, delta) is the usual conversion of Balle et
al. (2020), as Opacus does. Nothing here is tight: the general subsampling bound is
looser than the Gaussian-specific one, so a distributed release's epsilon is a
little above that of a Gaussian with the same variance (the audit checks this).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.special import gammaln, logsumexp

from fedctr.privacy.budget import BUDGET_REL_TOL, PrivacyBudget
from fedctr.privacy.distributed.mechanism import SkellamRound
from fedctr.privacy.errors import BudgetExceededError, InvalidPrivacyParameter

ORDERS: tuple[int, ...] = (*range(2, 65), 80, 96, 128, 160, 192, 256, 384, 512)


def skellam_rdp(alpha: float, *, l2: float, l1: float, mu: float) -> float:
    """RDP of one unsubsampled Skellam release at order ``alpha``."""
    gaussian = alpha * l2 * l2 / (4 * mu)
    correction = min(((2 * alpha - 1) * l2 * l2 + 6 * l1) / (16 * mu * mu), 3 * l1 / (4 * mu))
    return gaussian + correction


def subsampled_rdp(alpha: int, q: float, rdp_at: np.ndarray) -> float:
    """Zhu & Wang's general Poisson-subsampling bound at integer ``alpha``;
    ``rdp_at[j]`` is the unsubsampled RDP at order ``j`` (``j >= 2``)."""
    if q == 1:
        return float(rdp_at[alpha])
    log_1q, log_q = math.log1p(-q), math.log(q)
    j = np.arange(3, alpha + 1)
    log_binom = gammaln(alpha + 1) - gammaln(j + 1) - gammaln(alpha - j + 1)
    head = [
        (alpha - 1) * log_1q + math.log1p((alpha - 1) * q),
        float(gammaln(alpha + 1) - gammaln(3) - gammaln(alpha - 1))
        + 2 * log_q
        + (alpha - 2) * log_1q
        + rdp_at[2],
    ]
    tail = math.log(3) + log_binom + j * log_q + (alpha - j) * log_1q + (j - 1) * rdp_at[j]
    return float(logsumexp(np.concatenate([head, tail]))) / (alpha - 1)


@functools.lru_cache(maxsize=256)
def _release_rdp(release: SkellamRound, orders: tuple[int, ...]) -> tuple[float, ...]:
    alphas = np.arange(max(orders) + 1, dtype=float)
    base = np.array(
        [
            skellam_rdp(a, l2=release.l2_sensitivity, l1=release.l1_sensitivity, mu=release.mu)
            if a >= 2
            else np.nan
            for a in alphas
        ]
    )
    return tuple(subsampled_rdp(a, release.sample_rate, base) for a in orders)


def release_rdp(release: SkellamRound, orders: Sequence[int] = ORDERS) -> np.ndarray:
    """RDP of one release at each order (subsampled when ``sample_rate < 1``)."""
    return np.array(_release_rdp(release, tuple(orders)))


def rdp_to_epsilon(rdp: np.ndarray, delta: float, orders: Sequence[int] = ORDERS) -> float:
    """Smallest epsilon over the orders (Balle et al. 2020's conversion)."""
    a = np.asarray(orders, dtype=float)
    eps = rdp + np.log1p(-1 / a) - (math.log(delta) + np.log(a)) / (a - 1)
    return float(max(np.nanmin(eps), 0.0))


def epsilon(history: Sequence[SkellamRound], delta: float, *, colluding: int = 0) -> float:
    """Cumulative epsilon of ``history`` against the platform and ``colluding`` partners.

    ``colluding = 0`` is the platform alone (and anyone who sees only what it
    publishes); a release whose ``min_shares`` the coalition reaches protects nothing
    beyond one share of noise, so ``colluding`` is capped at ``min_shares - 1``.
    """
    if not history:
        return 0.0
    counts = Counter(r.seen_by(min(colluding, r.min_shares - 1)) for r in history)
    total = sum(n * release_rdp(r) for r, n in counts.items())
    return rdp_to_epsilon(np.asarray(total), delta)


def calibrate(
    *,
    budget: PrivacyBudget,
    rounds: int,
    template: SkellamRound,
    spent: Sequence[SkellamRound] = (),
    tolerance: float = 1e-3,
) -> SkellamRound:
    """The least noise for ``rounds`` more releases like ``template`` to fit ``budget``
    after ``spent`` (against the platform): a bisection on the noise multiplier."""
    if rounds < 1:
        raise InvalidPrivacyParameter("calibrate at least one round")

    def eps_at(sigma: float) -> float:
        release = replace(template, noise_multiplier=sigma)
        return epsilon([*spent, *([release] * rounds)], budget.delta)

    low, high = 1e-3, 1.0
    while eps_at(high) > budget.epsilon:
        high *= 2
        if high > 1e6:
            raise BudgetExceededError(
                f"no noise fits {rounds} more distributed round(s) into epsilon={budget.epsilon}"
            )
    while high - low > tolerance * high:
        mid = (low + high) / 2
        if eps_at(mid) > budget.epsilon * (1 + BUDGET_REL_TOL):
            low = mid
        else:
            high = mid
    return replace(template, noise_multiplier=high)


__all__ = ["ORDERS", "calibrate", "epsilon", "rdp_to_epsilon", "release_rdp", "skellam_rdp"]
