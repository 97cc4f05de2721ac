"""The scoring service: a signed model from the registry, served over HTTP.

``api/`` is the FastAPI app (and ``fedctr serve``); the rest is its inference path:
Arrow request bodies, numpy kernels, the circuit breaker. Rows become model inputs
through the encoder partner training uses too (:mod:`fedctr.models.encoding`). Names
resolve on first use (:mod:`fedctr.lazy`) so that ``fedctr.server.scoring.api`` can set
BLAS thread limits before numpy is imported.
"""

from fedctr.lazy import lazy_exports

_EXPORTS = {
    "BreakerSettings": "fedctr.server.scoring.breaker",
    "CircuitBreaker": "fedctr.server.scoring.breaker",
    "Inference": "fedctr.server.scoring.scorer",
    "Kernel": "fedctr.server.scoring.kernels",
    "Scorer": "fedctr.server.scoring.scorer",
    "ScoringError": "fedctr.server.scoring.scorer",
    "TorchKernel": "fedctr.server.scoring.kernels",
    "build_kernel": "fedctr.server.scoring.kernels",
    "kernel_names": "fedctr.server.scoring.kernels",
    "register_kernel": "fedctr.server.scoring.kernels",
    "sigmoid": "fedctr.server.scoring.scorer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
