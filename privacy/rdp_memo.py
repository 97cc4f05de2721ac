"""Memoize Opacus' per-order RDP of the sampled Gaussian within one process.

``opacus.accountants.analysis.rdp._compute_rdp(q, sigma, alpha)`` is a pure function
of floats, computed by a pure-Python series (~1 ms per fractional order). Noise
calibration bisects over sigma and re-accounts the partner's whole history at every
step, so one partner round asks for the same terms hundreds of times (1-3 s of a
1,000-row LR round, measured with cProfile), and many partners with the same declared
(q, sigma), as in a simulation or a benchmark, ask for the very same ones. Caching
returns the very same floats: calibration, budget checks and reported epsilons are
unchanged (``tests/privacy/test_rdp_memo.py``).

Installed by the ClientApp (a simulation's Ray workers serve many virtual partners)
and by benchmarks; the cache is bounded (``maxsize`` terms, ~100 bytes each).
"""

from __future__ import annotations

import functools

from opacus.accountants.analysis import rdp as _rdp

_ORIGINAL = _rdp._compute_rdp


def memoize_opacus_rdp(maxsize: int = 200_000) -> None:
    """Install the cache (idempotent)."""
    if getattr(_rdp._compute_rdp, "__wrapped__", None) is _ORIGINAL:
        return
    _rdp._compute_rdp = functools.lru_cache(maxsize=maxsize)(_ORIGINAL)


def is_memoized() -> bool:
    return getattr(_rdp._compute_rdp, "__wrapped__", None) is _ORIGINAL


__all__ = ["is_memoized", "memoize_opacus_rdp"]
