"""Poisson sampling by geometric gaps: the same law as one coin per row, exactly, at a
cost proportional to the sample (fedctr.privacy.poisson)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.poisson import GapSampler, PoissonSampler, inclusion_threshold
from fedctr.privacy.randomness import SecureRandom

KEY = bytes(range(32))


class _Counting:
    """A word source that counts what it hands out."""

    def __init__(self, rng: SecureRandom) -> None:
        self.rng, self.drawn = rng, 0

    def __call__(self, count: int) -> np.ndarray:
        self.drawn += count
        return self.rng.words(count)


def _survival(threshold: int, k: int) -> Fraction:
    return Fraction(2**64 - threshold, 2**64) ** k


@pytest.mark.parametrize("rate", [0.3, 1 / 1024, 1e-5])
def test_the_gap_table_bounds_are_certified_against_exact_rationals(rate: float) -> None:
    threshold = inclusion_threshold(rate)
    sampler = GapSampler(threshold, table_entries=300)
    lo, hi = sampler._lo_up[::-1], sampler._hi_up[::-1]  # k = 1..K
    for k in range(1, sampler.entries + 1):
        exact = _survival(threshold, k) * 2**64
        assert int(lo[k - 1]) <= exact <= int(hi[k - 1])
        assert int(hi[k - 1]) - int(lo[k - 1]) <= 2


def test_an_undecided_word_is_settled_exactly_with_further_words() -> None:
    """Words the table cannot decide (next to a bound) get the exact geometric value."""
    threshold = inclusion_threshold(0.3)
    sampler = GapSampler(threshold, table_entries=64)
    lo = sampler._lo_up[::-1]
    for k in (1, 5, 40):
        word = int(lo[k - 1])  # u in [lo_k, lo_k + 1) / 2**64: straddles (1 - p)^k
        for extra in (0, 2**63, 2**64 - 1):
            fed = iter([np.array([word], np.uint64), np.array([extra], np.uint64)])
            script = iter([*[np.array([extra], np.uint64)] * 8])

            def words(count: int, fed=fed, script=script) -> np.ndarray:
                nxt = next(fed, None)
                return nxt if nxt is not None else next(script)

            gap = int(sampler.gaps(1, words)[0])
            u = Fraction(word * 2**64 + extra, 2**128)  # the next word's bits follow
            exact = max(j for j in range(0, 200) if u < _survival(threshold, j))
            # later bits can only matter if u sits on a boundary to 128 bits
            assert gap == exact


def test_gaps_past_the_table_use_memorylessness_and_keep_the_geometric_law() -> None:
    rate = 0.05
    threshold = inclusion_threshold(rate)
    sampler = GapSampler(threshold, table_entries=8)  # most gaps run past the table
    gaps = sampler.gaps(100_000, SecureRandom.from_key(KEY).words)
    p = threshold / 2**64
    assert abs(gaps.mean() - (1 - p) / p) < 5 * math.sqrt((1 - p) / p**2 / len(gaps))
    for k in (1, 8, 30):  # P(G >= k) = (1 - p)^k
        observed = float((gaps >= k).mean())
        expected = (1 - p) ** k
        assert abs(observed - expected) < 5 * math.sqrt(expected * (1 - expected) / len(gaps))


def test_each_row_is_included_independently_at_the_declared_rate() -> None:
    n, rate, draws = 40, 0.3, 20_000
    sampler = PoissonSampler(rate)
    rng = SecureRandom.from_key(KEY)
    hits = np.zeros((draws, n), dtype=bool)
    for i in range(draws):
        hits[i, sampler.indices(n, rng.words)] = True
    p = float(sampler.probability)
    sd = math.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(hits.mean(axis=0) - p) < 5 * sd)  # every row, not only on average
    both = (hits[:, :-1] & hits[:, 1:]).mean(axis=0)  # neighbours are independent
    assert np.all(np.abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / draws))
    sizes = hits.sum(axis=1)  # the batch size is Binomial(n, p)
    assert abs(sizes.mean() - n * p) < 5 * math.sqrt(n * p * (1 - p) / draws)
    assert abs(sizes.var() - n * p * (1 - p)) < 0.1 * n * p * (1 - p)


def test_a_step_costs_words_in_proportion_to_the_sample_not_to_the_rows() -> None:
    n, rate = 10_000_000, 1e-4
    counting = _Counting(SecureRandom.from_key(KEY))
    index = PoissonSampler(rate).indices(n, counting)
    assert abs(len(index) - n * rate) < 5 * math.sqrt(n * rate)
    assert counting.drawn < 2 * n * rate + 100  # the coin-per-row mask: 10^7 words
    assert np.all(np.diff(index) > 0) and index[0] >= 0 and index[-1] < n


def test_the_inclusion_probability_is_the_masks_never_above_the_rate() -> None:
    for rate in (0.05, 1 / 3, 1e-7):
        assert PoissonSampler(rate).probability == Fraction(inclusion_threshold(rate), 2**64)
        assert PoissonSampler(rate).probability <= Fraction(rate)
    rng = SecureRandom.from_key(KEY)
    assert PoissonSampler(1.0).indices(5, rng.words).tolist() == [0, 1, 2, 3, 4]
    assert len(PoissonSampler(2.0**-70).indices(1000, rng.words)) == 0
    assert len(PoissonSampler(0.5).indices(0, rng.words)) == 0
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InvalidPrivacyParameter):
            PoissonSampler(bad)
