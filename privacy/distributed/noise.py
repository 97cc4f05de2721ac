"""Skellam noise for a partner's share: exact integers, drawn from a CSPRNG-seeded source.

``Sk(mu) = Poisson(mu) - Poisson(mu)`` per coordinate. Integer noise has no
floating-point support gaps (Mironov's attack needs a continuous sampler computed in
floating point), and adds exactly under SecAgg's modular arithmetic. The Poisson
draws come from numpy's PCG64DXSM generator seeded with 256 bits of the ChaCha20
keystream of :class:`~fedctr.privacy.randomness.SecureRandom`: a fresh seed per
release, but PCG64DXSM itself is not a cryptographic generator (said in the README).
"""

from __future__ import annotations

import numpy as np

from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.randomness import SecureRandom


def skellam_noise(size: int, *, mu: float, rng: SecureRandom) -> np.ndarray:
    """``size`` draws of ``Sk(mu)`` (int64)."""
    if not mu > 0:
        raise InvalidPrivacyParameter(f"Skellam mu must be positive, got {mu}")
    seed = np.frombuffer(rng.keystream(32), dtype=np.uint64)
    gen = np.random.Generator(np.random.PCG64DXSM(np.random.SeedSequence(seed.tolist())))
    return gen.poisson(mu, size).astype(np.int64) - gen.poisson(mu, size).astype(np.int64)


__all__ = ["skellam_noise"]
