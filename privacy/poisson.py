"""Exact Poisson sampling in time proportional to the sample, not to the log.

One keystream word per row per step (:meth:`fedctr.privacy.randomness.SecureRandom.poisson_mask`)
costs ``O(n)`` per step, so ``O(n^2 / batch)`` per epoch: at 10^7 rows and 1,024-row
batches that is 800 GB of keystream an epoch. Here a step draws the *gaps* between
included rows instead: for independent inclusions of probability ``p``, the number of
excluded rows before the next included one is geometric, ``P(G >= k) = (1 - p)^k``,
so a step costs ``O(n p)`` words, one per sampled row (plus one).

Exactly the sampler the accountant is told about. ``p`` is the mask's
``floor(rate * 2**64) / 2**64`` (never above the declared rate). A gap is drawn by
inverting the survival function with a table of *certified* 64-bit bounds on
``(1 - p)^k`` (interval arithmetic on 128-bit integers, :class:`GapSampler`): a word
whose value is decided by the bounds (all but ~``2^-47`` of them) gives the exact
geometric value; an undecided one is settled by exact rational comparison against
``(1 - p)^k``, drawing further words as needed. Gaps past the table's end use the
geometric law's memorylessness (``G = K + G'``). No floating point is involved, so the
included rows are exactly independent Bernoulli(``p``) draws, as with the mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.validate import Checker

_CHECK = Checker(InvalidPrivacyParameter)

Words = Callable[[int], np.ndarray]  # the next ``count`` uniform uint64 words (a copy)

#: Table length: gaps of at least this many rows are drawn in pieces (memorylessness).
#: 2^16 entries cost ~40 ms to build and 1 MiB to keep.
TABLE_ENTRIES = 1 << 16
_TWO_64 = 1 << 64
_MASK_64 = _TWO_64 - 1


def inclusion_threshold(rate: float) -> int:
    """``floor(rate * 2**64)``, exactly: a row is included with probability this / 2**64."""
    _CHECK.rate(rate, "a sampling rate")
    return math.floor(Fraction(rate) * _TWO_64)


class GapSampler:
    """Geometric gaps for one inclusion probability ``p = threshold / 2**64``.

    ``lo[k-1] <= (1 - p)^k * 2**64 <= hi[k-1]`` for ``k = 1..K`` (certified bounds). For
    a word ``U`` (``u`` uniform in ``[U, U + 1) / 2**64``) the gap is
    ``max{k : u < (1 - p)^k}``: every ``k`` with ``lo > U`` surely qualifies, every ``k``
    with ``hi <= U`` surely does not, and the rest are decided exactly.
    """

    def __init__(self, threshold: int, *, table_entries: int = TABLE_ENTRIES) -> None:
        if not 0 < threshold < _TWO_64:
            raise InvalidPrivacyParameter("a gap sampler needs 0 < p < 1")
        self.threshold = threshold
        self._keep = _TWO_64 - threshold  # (1 - p) * 2**64
        lo, hi = [], []
        lo128 = hi128 = 1 << 128  # (1 - p)^0 * 2**128, exactly
        for _ in range(table_entries):
            lo128 = (lo128 * self._keep) >> 64  # floor: stays a lower bound
            hi128 = -((-hi128 * self._keep) >> 64)  # ceil: stays an upper bound
            lo.append(lo128 >> 64)
            hi.append(min(-((-hi128) >> 64), _MASK_64))
            if lo[-1] == 0:  # every later k is undecided for U = 0 only: stop here
                break
        self.entries = len(lo)
        # ascending copies for searchsorted (the bounds decrease with k)
        self._lo_up = np.array(lo[::-1], dtype=np.uint64)
        self._hi_up = np.array(hi[::-1], dtype=np.uint64)

    @property
    def probability(self) -> Fraction:
        return Fraction(self.threshold, _TWO_64)

    def gaps(self, count: int, words: Words) -> np.ndarray:
        """``count`` independent geometric gaps (int64), from ``words``."""
        out = np.zeros(count, dtype=np.int64)
        pending = np.arange(count)
        while len(pending):
            drawn = words(len(pending))
            surely = self.entries - np.searchsorted(self._lo_up, drawn, side="right")
            maybe = self.entries - np.searchsorted(self._hi_up, drawn, side="right")
            gap = surely.astype(np.int64)
            for i in np.flatnonzero(surely != maybe):  # ~2^-47 of words: exact path
                gap[i] = self._exact(int(drawn[i]), int(surely[i]), int(maybe[i]), words)
            out[pending] += gap
            # G >= K: by memorylessness G = K + a fresh gap
            pending = pending[gap >= self.entries]
        return out

    def _exact(self, word: int, surely: int, maybe: int, words: Words) -> int:
        """The gap for a word the table cannot decide: ``surely`` values of ``k`` qualify
        for sure, ``k > maybe`` do not; decide ``u < (1 - p)^k`` exactly for the rest."""
        bits = 64
        value = word  # u lies in [value, value + 1) / 2**bits
        gap = surely
        for k in range(surely + 1, maybe + 1):
            power = self._keep**k  # (1 - p)^k = power / 2**(64 k)
            while True:
                if (value + 1) << (64 * k) <= power << bits:
                    gap = k  # u < (1 - p)^k, whatever the remaining bits
                    break
                if value << (64 * k) >= power << bits:
                    return gap  # u >= (1 - p)^k, and so for every larger k
                value = (value << 64) | int(words(1)[0])
                bits += 64
        return gap

    def indices(self, n: int, words: Words) -> np.ndarray:
        """The included rows of ``0..n-1`` (sorted int64): each independently with
        probability ``p``; gaps are drawn in batches sized to the expected sample."""
        _CHECK.integer(n, "a row count")
        p = self.threshold / _TWO_64
        parts: list[np.ndarray] = []
        last = -1
        while True:
            expected = (n - 1 - last) * p
            count = int(min(1 << 16, expected + 4 * math.sqrt(expected) + 8))
            positions = last + np.cumsum(self.gaps(count, words) + 1)
            inside = positions < n
            parts.append(positions[inside])
            if not inside.all():
                break
            last = int(positions[-1])
        return np.concatenate(parts)


class PoissonSampler:
    """Which of ``n`` rows one Poisson step includes, at a declared rate: each row
    independently with probability ``floor(rate * 2**64) / 2**64``.

    Build one per rate (the gap table is reused by every step); ``rate = 1`` includes
    every row, a rate below ``2**-64`` none.
    """

    def __init__(self, rate: float, *, table_entries: int = TABLE_ENTRIES) -> None:
        self.rate = _CHECK.rate(rate, "a sampling rate")
        threshold = inclusion_threshold(rate)
        self._gaps = (
            GapSampler(threshold, table_entries=table_entries) if 0 < threshold < _TWO_64 else None
        )
        self._all = threshold >= _TWO_64

    @property
    def probability(self) -> Fraction:
        """The exact inclusion probability (never above the declared rate)."""
        if self._gaps is not None:
            return self._gaps.probability
        return Fraction(1 if self._all else 0)

    def indices(self, n: int, words: Words) -> np.ndarray:
        """The included rows of ``0..n-1``, sorted (int64)."""
        _CHECK.integer(n, "a row count")
        if self._gaps is None:
            return np.arange(n if self._all else 0, dtype=np.int64)
        return self._gaps.indices(n, words)


__all__ = ["TABLE_ENTRIES", "GapSampler", "PoissonSampler", "Words", "inclusion_threshold"]
