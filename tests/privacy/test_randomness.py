"""The CSPRNG behind DP-SGD: reproducible only under a known key, Gaussian where it must
be, Poisson at (never above) the declared rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from privacy.errors import InvalidPrivacyParameter
from privacy.randomness import SecureRandom

KEY = bytes(range(32))


def _normals(n: int, std: float = 1.0, key: bytes = KEY) -> np.ndarray:
    out = torch.empty(n)
    SecureRandom.from_key(key).gaussian_(out, std=std)
    return out.numpy().astype(np.float64)


def test_the_same_key_gives_the_same_stream_and_another_key_another() -> None:
    a, b, c = _normals(1000), _normals(1000), _normals(1000, key=bytes(32))

    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    fresh = [torch.empty(100) for _ in range(2)]
    for out in fresh:
        SecureRandom.fresh().gaussian_(out, std=1.0)
    assert not torch.equal(*fresh)


def test_gaussian_moments_match_a_standard_normal_on_a_million_draws() -> None:
    """Mean, variance, skew and kurtosis within 5 standard errors; KS does not reject."""
    n = 1_000_000
    z = _normals(n)

    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z[:200_000], "norm").pvalue > 1e-4


def test_std_scales_the_same_stream_exactly_and_zero_std_gives_zeros() -> None:
    unit, scaled = _normals(10_000), _normals(10_000, std=3.5)

    np.testing.assert_allclose(scaled, 3.5 * unit, rtol=1e-6, atol=1e-6)
    zeros = torch.ones(7)
    SecureRandom.from_key(KEY).gaussian_(zeros, std=0.0)
    assert torch.equal(zeros, torch.zeros(7))


def test_the_tails_hold_the_gaussian_mass_beyond_four_sigma() -> None:
    """The count of |z| > 4 in 4M draws matches 2 * Phi(-4) within Poisson bounds."""
    n = 4_000_000
    expected = n * 2 * stats.norm.sf(4.0)
    count = int((np.abs(_normals(n)) > 4.0).sum())

    assert abs(count - expected) < 5 * math.sqrt(expected)


def test_gaussian_refuses_what_it_cannot_fill() -> None:
    rng = SecureRandom.from_key(KEY)
    with pytest.raises(TypeError):
        rng.gaussian_(torch.empty(4, dtype=torch.float64), std=1.0)
    with pytest.raises(InvalidPrivacyParameter):
        rng.gaussian_(torch.empty(4), std=-1.0)
    with pytest.raises(InvalidPrivacyParameter):
        SecureRandom(b"short")


@pytest.mark.parametrize("rate", [0.001, 0.05, 0.5])
def test_poisson_mask_rate_is_the_declared_one_within_binomial_bounds(rate: float) -> None:
    n = 400_000
    mask = SecureRandom.from_key(KEY).poisson_mask(n, rate=rate)
    sd = math.sqrt(n * rate * (1 - rate))

    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert abs(int(mask.sum()) - n * rate) < 5 * sd


def test_poisson_mask_is_never_above_the_declared_rate() -> None:
    """The threshold is floor(rate * 2**64): an exactly representable rate is exact, and a
    64-bit uniform equal to the threshold is excluded."""
    rng = SecureRandom.from_key(KEY)
    assert not bool(rng.poisson_mask(100_000, rate=2.0**-70).any())
    assert bool(rng.poisson_mask(1000, rate=1.0).all())
    for bad in (0.0, -0.1, 1.5, True):
        with pytest.raises(InvalidPrivacyParameter):
            rng.poisson_mask(10, rate=bad)
