"""The inference path of the scoring API: request encoding, numpy kernels, circuit breaker."""

from server.scoring.breaker import BreakerSettings, CircuitBreaker
from server.scoring.encoder import EncodedBatch, FeatureEncoder
from server.scoring.kernels import Kernel, TorchKernel, build_kernel, kernel_names, register_kernel
from server.scoring.scorer import Inference, Scorer, ScoringError, sigmoid

__all__ = [
    "BreakerSettings",
    "CircuitBreaker",
    "EncodedBatch",
    "FeatureEncoder",
    "Inference",
    "Kernel",
    "Scorer",
    "ScoringError",
    "TorchKernel",
    "build_kernel",
    "kernel_names",
    "register_kernel",
    "sigmoid",
]
