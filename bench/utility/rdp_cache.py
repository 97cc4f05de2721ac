"""Memoize Opacus' per-order RDP of the sampled Gaussian, for this benchmark process only.

``opacus.accountants.analysis.rdp._compute_rdp(q, sigma, alpha)`` is a pure function
of floats. Noise calibration bisects over sigma and re-accounts the partner's whole
history at every step, for every partner, round and seed, so the benchmark asks for
the same terms thousands of times; at sampling rates ~0.1-0.3 the fractional orders
cost ~10 ms each and calibration dominated the run (16 s per partner round). Caching
returns the very same floats: the calibration, budget checks and reported epsilons
are unchanged. Production nodes calibrate once per round and are not patched.
"""

from __future__ import annotations

import functools

from opacus.accountants.analysis import rdp as _rdp

_ORIGINAL = _rdp._compute_rdp


def memoize_opacus_rdp(maxsize: int = 1_000_000) -> None:
    """Install the cache (idempotent)."""
    if getattr(_rdp._compute_rdp, "__wrapped__", None) is _ORIGINAL:
        return
    _rdp._compute_rdp = functools.lru_cache(maxsize=maxsize)(_ORIGINAL)


def is_memoized() -> bool:
    return getattr(_rdp._compute_rdp, "__wrapped__", None) is _ORIGINAL


__all__ = ["is_memoized", "memoize_opacus_rdp"]
