"""The epsilon lower bound of a one-run privacy audit (Steinke, Nasr & Jagielski 2023).

"Privacy Auditing with One (1) Training Run", NeurIPS 2023, arXiv 2305.08846. ``m``
canaries are each included in the training data independently with probability 1/2;
the model is trained once; an auditor who sees the model scores every canary, guesses
"in" for the ``k+`` highest scores and "out" for the ``k-`` lowest, and abstains on the
rest. If training is (epsilon, delta)-DP, the number ``v`` of correct guesses among the
``r = k+ + k-`` made is stochastically dominated, up to a delta term, by
``Binomial(r, e^eps / (1 + e^eps))``, the accuracy of eps-DP randomized response on
every guess (the paper's main theorem; for delta > 0 it adds the term proportional to
``2 m delta`` below)::

    P[V >= v] <= beta + 2 m delta alpha
    beta  = P[Binomial(r, q) >= v],          q = e^eps / (1 + e^eps)
    alpha = max_{1 <= i <= v} P[v - i <= Binomial(r, q) < v] / i

An observed ``v`` whose right-hand side is at most ``1 - confidence`` refutes the
claim "(eps, delta)-DP"; the lower bound is the largest such eps (0 when no eps >= 0 is
refuted). The p-value and the root search follow google-deepmind/jax_privacy,
``jax_privacy/auditing.py`` (``_one_run_p_value`` and ``_epsilon_one_run``, read at
commit 8967688c26d4, 2026-08-20); the golden tests in
``tests/privacy/test_empirical_audit.py`` pin this module to numbers computed with that
file.

Choosing the guess counts. The bound depends on ``(k+, k-)``, and the best pair is only
known after seeing the scores. Taking the best of several pairs at the nominal level would
over-state the confidence, so every pair of the (fixed, data-independent) grid is tested
at ``(1 - confidence) / len(grid)`` (Bonferroni), exactly what jax_privacy's default
``Bonferroni()`` threshold strategy does over thresholds; the reported bound is then a
valid ``confidence``-level lower bound for the whole procedure. The default grid is small
(at most 18 pairs: 9 guess fractions, each one-sided and balanced) because the correction costs
``log(len(grid))`` in the exponent.

Nothing here has a default for confidence or delta: a lower bound at the wrong delta or
confidence is a different claim, and the caller must say which one it makes.
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

from fedctr.privacy.errors import InvalidPrivacyParameter, PrivacyError
from fedctr.validate import Checker

# Fractions of the m canaries guessed on (the rest are abstentions). Small fractions
# catch a strong signal on a few canaries (high precision), large ones a weak signal
# spread over many (more guesses); 1.0 lets a perfect separation reach the ceiling.
DEFAULT_GUESS_FRACTIONS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0)


class CanaryScoreError(PrivacyError, ValueError):
    """Canary scores, memberships or guess counts that cannot be audited."""


@dataclass(frozen=True)
class OneRunBound:
    """A one-run lower bound and the guesses that produced it.

    ``epsilon`` is a lower bound on the epsilon of any (epsilon, ``delta``)-DP claim the
    training could satisfy, at ``confidence`` over the canaries' random membership.
    ``k_plus``/``k_minus``/``guesses``/``correct`` are those of the grid point that gave
    the bound (the first grid point when the bound is 0);
    ``candidates`` is the size of the grid the Bonferroni correction divided by.
    """

    epsilon: float
    confidence: float
    delta: float
    m: int
    k_plus: int
    k_minus: int
    guesses: int
    correct: int
    candidates: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_confidence(confidence: object) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise InvalidPrivacyParameter(f"confidence must be a real number, got {confidence!r}")
    if not 0.5 <= confidence < 1:  # also refuses NaN
        raise InvalidPrivacyParameter(f"confidence must be in [0.5, 1), got {confidence!r}")
    return float(confidence)


def _check_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float):
        raise InvalidPrivacyParameter(f"delta must be a real number, got {delta!r}")
    if not 0 <= delta < 1:
        raise InvalidPrivacyParameter(f"delta must be in [0, 1), got {delta!r}")
    return float(delta)


def _check_counts(m: object, guesses: object, correct: object) -> tuple[int, int, int]:
    for name, value in (("m", m), ("guesses", guesses), ("correct", correct)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise CanaryScoreError(f"{name} must be an integer, got {value!r}")
    m, guesses, correct = int(m), int(guesses), int(correct)  # type: ignore[arg-type]
    if not 0 <= correct <= guesses <= m or m <= 0:
        raise CanaryScoreError(
            f"need 0 <= correct <= guesses <= m and m > 0, got correct={correct}, "
            f"guesses={guesses}, m={m}"
        )
    return m, guesses, correct


def one_run_p_value(*, m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[at least ``correct`` of ``guesses`` right] under (epsilon, delta)-DP.

    ``m`` is the number of canaries (it scales the delta term: each canary may be the
    one the delta "fails" for). Same formula as jax_privacy's ``_one_run_p_value``.
    """
    m, guesses, correct = _check_counts(m, guesses, correct)
    delta = _check_delta(delta)
    epsilon = Checker(InvalidPrivacyParameter).non_negative(epsilon, "epsilon")
    return _p_value(m, guesses, correct, epsilon, delta)


def _p_value(m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    q = float(scipy.special.expit(epsilon))
    binom = scipy.stats.binom
    beta = float(binom.sf(correct - 1, guesses, q))  # P[Binomial(r, q) >= v]
    if delta == 0 or correct == 0:
        return min(beta, 1.0)
    i = np.arange(1, correct + 1)
    # P[v - i <= Binomial < v] / i, maximised over i: the paper's delta correction.
    window = binom.sf(correct - i - 1, guesses, q) - beta
    alpha = float(np.max(window / i, initial=0.0))
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound_from_counts(
    *, m: int, guesses: int, correct: int, confidence: float, delta: float
) -> float:
    """Largest epsilon whose (epsilon, delta)-DP claim ``correct`` of ``guesses`` refutes
    at ``confidence`` (0 if not even epsilon = 0 is refuted); one fixed guess count.

    Root of ``p_value(eps) = 1 - confidence`` by doubling then Brent's method, as
    jax_privacy's ``_epsilon_one_run`` (tolerance 1e-6); the p-value grows with eps.
    """
    m, guesses, correct = _check_counts(m, guesses, correct)
    significance = 1.0 - _check_confidence(confidence)
    delta = _check_delta(delta)
    return _bound(m, guesses, correct, significance, delta)


def _bound(m: int, guesses: int, correct: int, significance: float, delta: float) -> float:
    if guesses == 0 or _p_value(m, guesses, correct, 0.0, 0.0) > significance:
        return 0.0  # even pure 0-DP is not refuted, let alone with delta > 0

    def refuted_by(eps: float) -> float:  # > 0 iff the (eps, delta) claim is refuted
        return significance - _p_value(m, guesses, correct, eps, delta)

    lo = 0.0
    if refuted_by(lo) <= 0:
        return 0.0
    hi = 1.0
    while refuted_by(hi) > 0:  # p -> 1 as eps -> inf, so this ends
        lo, hi = hi, 2 * hi
    return float(scipy.optimize.brentq(refuted_by, lo, hi, xtol=1e-6))


def max_epsilon_lower_bound(m: int, *, confidence: float, delta: float) -> float:
    """The largest bound ``m`` canaries can ever give (every canary guessed, all right).

    An audit that must refute a claim of epsilon needs at least the ``m`` for which this
    exceeds epsilon; with the default grid, ``candidates`` times the significance.
    """
    return epsilon_lower_bound_from_counts(
        m=m, guesses=m, correct=m, confidence=confidence, delta=delta
    )


def default_guess_grid(m: int) -> tuple[tuple[int, int], ...]:
    """``(k+, k-)`` pairs tested by :func:`epsilon_lower_bound`, independent of the data.

    For each fraction ``f`` of :data:`DEFAULT_GUESS_FRACTIONS`, ``r = round(f m)``
    guesses, either all "in" (the one-sided test of jax_privacy: ``k- = 0``) or split
    evenly between the top and the bottom of the ranking (the paper's two-sided test,
    which also uses "clearly out" canaries).
    """
    Checker(CanaryScoreError).integer(m, "m", minimum=1)
    pairs: list[tuple[int, int]] = []
    for f in DEFAULT_GUESS_FRACTIONS:
        r = max(1, round(f * m))
        for pair in ((r, 0), ((r + 1) // 2, r // 2)):
            if pair not in pairs:
                pairs.append(pair)
    return tuple(pairs)


def count_correct(scores: np.ndarray, membership: np.ndarray, *, k_plus: int, k_minus: int) -> int:
    """Correct guesses when the ``k_plus`` highest scores are guessed "in" and the
    ``k_minus`` lowest "out".

    Ties are broken by canary index (a stable sort): the index is assigned before
    membership is drawn, so the guesses still depend on nothing but the output and
    public information, which is all the theorem asks.
    """
    scores, membership = _check_scores(scores, membership)
    m = len(scores)
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > m:
        raise CanaryScoreError(f"need k+ >= 0, k- >= 0, k+ + k- <= m={m}, got {k_plus}, {k_minus}")
    order = np.argsort(scores, kind="stable")  # ascending
    out_guesses = order[:k_minus]
    in_guesses = order[m - k_plus :] if k_plus else order[:0]
    return int(membership[in_guesses].sum() + (~membership[out_guesses]).sum())


def _check_scores(scores: object, membership: object) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    b = np.asarray(membership)
    if s.ndim != 1 or b.shape != s.shape or len(s) == 0:
        raise CanaryScoreError(
            f"scores and membership must be 1-D of the same non-zero length, got shapes "
            f"{s.shape} and {b.shape}"
        )
    if b.dtype != np.bool_:
        if not np.isin(b, (0, 1)).all():
            raise CanaryScoreError("membership must be boolean (or 0/1)")
        b = b.astype(bool)
    if not np.isfinite(s).all():
        raise CanaryScoreError("every canary score must be finite")
    return s, b


def epsilon_lower_bound(
    scores: Sequence[float] | np.ndarray,
    membership: Sequence[bool] | np.ndarray,
    *,
    confidence: float,
    delta: float,
    grid: Sequence[tuple[int, int]] | None = None,
) -> OneRunBound:
    """The one-run audit's epsilon lower bound from canary scores and true membership.

    ``scores``: higher means "more likely trained on"; ``membership[i]``: whether canary
    ``i`` was in the training data (drawn with probability 1/2 each, before training).
    Every ``(k+, k-)`` of ``grid`` (default :func:`default_guess_grid`) is tested at the
    Bonferroni-corrected level; the largest bound is returned with its counts.
    """
    s, b = _check_scores(scores, membership)
    significance = 1.0 - _check_confidence(confidence)
    delta = _check_delta(delta)
    m = len(s)
    pairs = tuple(grid) if grid is not None else default_guess_grid(m)
    if not pairs:
        raise CanaryScoreError("the guess grid is empty")
    level = significance / len(pairs)
    best: tuple[float, int, int, int] | None = None
    for k_plus, k_minus in pairs:
        correct = count_correct(s, b, k_plus=k_plus, k_minus=k_minus)
        eps = _bound(m, k_plus + k_minus, correct, level, delta)
        if best is None or eps > best[0]:
            best = (eps, k_plus, k_minus, correct)
    assert best is not None
    eps, k_plus, k_minus, correct = best
    return OneRunBound(
        epsilon=eps,
        confidence=1.0 - significance,
        delta=delta,
        m=m,
        k_plus=k_plus,
        k_minus=k_minus,
        guesses=k_plus + k_minus,
        correct=correct,
        candidates=len(pairs),
    )


def logit_precision(epsilon: float) -> float:
    """``e^eps / (1 + e^eps)``: the precision an eps-DP training caps any guesser at."""
    return float(scipy.special.expit(epsilon)) if math.isfinite(epsilon) else 1.0


__all__ = [
    "DEFAULT_GUESS_FRACTIONS",
    "CanaryScoreError",
    "OneRunBound",
    "count_correct",
    "default_guess_grid",
    "epsilon_lower_bound",
    "epsilon_lower_bound_from_counts",
    "logit_precision",
    "max_epsilon_lower_bound",
    "one_run_p_value",
]
