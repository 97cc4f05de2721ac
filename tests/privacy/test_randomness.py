"""The CSPRNG behind DP-SGD: ChaCha20 as specified, reproducible only under a known key,
Gaussian where it must be (moments, tails, exact scaling), Poisson at (never above) the
declared rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from scipy import stats

from fedctr.privacy import SecureRandom as ExportedSecureRandom
from fedctr.privacy.errors import InvalidPrivacyParameter, PrivacyError
from fedctr.privacy.randomness import NoiseTargetError, SecureRandom

KEY = bytes(range(32))
# RFC 8439, appendix A.1, test vector #1: ChaCha20 block of the all-zero key and nonce,
# block counter 0.
RFC8439_ZERO_BLOCK = bytes.fromhex(
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
)


def _normals(n: int, std: float = 1.0, key: bytes = KEY) -> np.ndarray:
    out = torch.empty(n)
    SecureRandom.from_key(key).gaussian_(out, std=std)
    return out.numpy().astype(np.float64)


# ---- the keystream ----------------------------------------------------------------------


def test_the_keystream_is_chacha20_as_rfc8439_specifies() -> None:
    """Known answer: the all-zero key gives RFC 8439's first block; any key gives exactly
    OpenSSL's ChaCha20 keystream (counter 0, nonce 0)."""
    assert SecureRandom.from_key(bytes(32)).keystream(64) == RFC8439_ZERO_BLOCK
    reference = Cipher(algorithms.ChaCha20(KEY, bytes(16)), mode=None).encryptor()
    rng = SecureRandom.from_key(KEY)

    assert rng.keystream(100) + rng.keystream(1000) == reference.update(bytes(1100))


def test_the_same_key_replays_every_draw_and_other_keys_do_not() -> None:
    """Draws of every kind replay under one key, in order; another key, or a fresh one,
    gives another stream, uncorrelated with the first."""

    def draws(rng: SecureRandom) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = rng.gaussian_(torch.empty(200_003), std=1.0)
        mask = rng.poisson_mask(10_001, rate=0.3)
        return noise, mask, rng.gaussian_(torch.empty(5), std=2.0)

    first, again = draws(SecureRandom.from_key(KEY)), draws(SecureRandom.from_key(KEY))
    other, fresh = draws(SecureRandom.from_key(bytes(32))), draws(SecureRandom.fresh())

    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    for stream in (other, fresh):
        assert not torch.equal(first[1], stream[1])
        corr = float(np.corrcoef(first[0].numpy(), stream[0].numpy())[0, 1])
        assert abs(corr) < 5 / math.sqrt(200_003)


def test_fresh_generators_use_fresh_keys() -> None:
    assert SecureRandom.fresh().keystream(32) != SecureRandom.fresh().keystream(32)
    assert ExportedSecureRandom is SecureRandom


# ---- Gaussian noise ---------------------------------------------------------------------


def test_gaussian_moments_match_a_standard_normal_on_a_million_draws() -> None:
    """Mean, variance, skew and excess kurtosis within 5 standard errors; KS does not
    reject; an odd length fills every entry."""
    n = 1_000_001
    z = _normals(n)

    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z[:200_000], "norm").pvalue > 1e-4
    assert abs(z[-1]) > 0  # the last (unpaired) entry was written


def test_pairs_of_draws_are_uncorrelated() -> None:
    """The cosine and sine halves of each Box-Muller pair, and neighbours, are uncorrelated
    (a pairing mistake would correlate them)."""
    n = 2 * 300_000
    z = _normals(n)
    bound = 5 / math.sqrt(n // 2)

    assert abs(float(np.corrcoef(z[: n // 2], z[n // 2 :])[0, 1])) < bound
    assert abs(float(np.corrcoef(z[:-1], z[1:])[0, 1])) < bound
    assert abs(float(np.corrcoef(z[: n // 2] ** 2, z[n // 2 :] ** 2)[0, 1])) < bound


def test_std_scales_the_same_stream_exactly_and_zero_std_gives_zeros() -> None:
    unit, scaled = _normals(10_000), _normals(10_000, std=3.5)

    np.testing.assert_allclose(scaled, 3.5 * unit, rtol=1e-6, atol=1e-12)
    zeros = torch.ones(7)
    assert SecureRandom.from_key(KEY).gaussian_(zeros, std=0.0) is zeros
    assert torch.equal(zeros, torch.zeros(7))
    tiny = _normals(1000, std=1e-200)  # std^2 underflows: scaled after the root
    assert np.array_equal(tiny, np.zeros(1000))  # float32 cannot hold 1e-200


def test_the_tails_hold_the_gaussian_mass_and_stop_where_documented() -> None:
    """The count of |z| > 4 in 4M draws matches 2 * Phi(-4) within Poisson bounds, and no
    draw exceeds sqrt(2 * 52 ln 2) = 8.49, the largest radius a 52-bit uniform gives."""
    n = 4_000_000
    z = _normals(n)
    expected = n * 2 * stats.norm.sf(4.0)

    assert abs(int((np.abs(z) > 4.0).sum()) - expected) < 5 * math.sqrt(expected)
    assert np.abs(z).max() <= math.sqrt(2 * 52 * math.log(2)) * (1 + 1e-6)


@pytest.fixture
def torch_threads():
    """Restore torch's thread count after a test changes it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_noise_does_not_depend_on_the_number_of_threads(torch_threads) -> None:
    """Chunk j of a call is drawn from its own position of the call's keystream, so one
    thread and three threads fill a multi-chunk tensor identically; and chunks differ."""
    chunk = 2**17  # values per chunk
    torch_threads(1)
    one = _normals(5 * chunk + 3)
    torch_threads(3)
    three = _normals(5 * chunk + 3)

    assert np.array_equal(one, three)
    assert int((one[:chunk] == one[chunk : 2 * chunk]).sum()) <= 2


def test_each_call_draws_fresh_noise() -> None:
    rng = SecureRandom.from_key(KEY)
    first, second = (rng.gaussian_(torch.empty(1000), std=1.0) for _ in range(2))

    assert not torch.equal(first, second)


def test_gaussian_refuses_what_it_cannot_fill() -> None:
    rng = SecureRandom.from_key(KEY)
    with pytest.raises(NoiseTargetError, match="float32"):
        rng.gaussian_(torch.empty(4, dtype=torch.float64), std=1.0)
    with pytest.raises(NoiseTargetError, match="contiguous"):
        rng.gaussian_(torch.empty(4, 4).t(), std=1.0)
    for bad in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(InvalidPrivacyParameter):
            rng.gaussian_(torch.empty(4), std=bad)
    assert issubclass(NoiseTargetError, PrivacyError)


# ---- Poisson sampling ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.001, 0.05, 0.5])
def test_poisson_mask_rate_is_the_declared_one_within_binomial_bounds(rate: float) -> None:
    n = 400_000
    mask = SecureRandom.from_key(KEY).poisson_mask(n, rate=rate)
    sd = math.sqrt(n * rate * (1 - rate))

    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert abs(int(mask.sum()) - n * rate) < 5 * sd


class _Scripted(SecureRandom):
    """Hands ``poisson_mask`` chosen 64-bit words instead of keystream."""

    def __init__(self, words: list[int]) -> None:
        super().__init__(key=KEY)
        self.script = np.array(words, dtype=np.uint64)

    def _words(self, count: int) -> np.ndarray:
        return self.script[:count]


@pytest.mark.parametrize("rate", [0.05, 1 / 3, 0.5, 1 - 2**-40])
def test_poisson_inclusion_is_word_below_floor_of_rate_times_2_to_64(rate: float) -> None:
    """Never above the declared rate: a word is included iff it is below
    floor(rate * 2**64), so exactly floor(rate * 2**64) of the 2**64 words are."""
    from fractions import Fraction

    threshold = math.floor(Fraction(rate) * 2**64)
    words = [0, threshold - 1, threshold, threshold + 1, 2**64 - 1]

    mask = _Scripted(words).poisson_mask(len(words), rate=rate)

    assert mask.tolist() == [True, True, False, False, False]
    assert Fraction(threshold, 2**64) <= Fraction(rate)


def test_poisson_mask_extremes_and_refusals() -> None:
    rng = SecureRandom.from_key(KEY)
    assert not bool(rng.poisson_mask(100_000, rate=2.0**-70).any())
    assert bool(rng.poisson_mask(1000, rate=1.0).all())
    assert rng.poisson_mask(0, rate=0.5).shape == (0,)
    for bad in (0.0, -0.1, 1.5, float("nan"), True):
        with pytest.raises(InvalidPrivacyParameter):
            rng.poisson_mask(10, rate=bad)
    with pytest.raises(InvalidPrivacyParameter):
        rng.poisson_mask(-1, rate=0.5)


def test_keys_must_be_32_bytes_and_keyword_only() -> None:
    for bad in (b"short", bytes(33), "x" * 32):
        with pytest.raises(InvalidPrivacyParameter):
            SecureRandom.from_key(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SecureRandom(KEY)  # type: ignore[misc]
