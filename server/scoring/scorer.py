"""The inference path: encode rows, run the kernel, apply the non-personalised shift.

One :class:`Scorer` per loaded model version; it is immutable after construction,
so a hot reload builds a new one next to the old and swaps a reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from fedctr.errors import FedctrError
from fedctr.models.base import CTRModel
from fedctr.models.encoding import EncodedBatch, FeatureEncoder
from fedctr.models.spec import FeatureSpec
from fedctr.privacy.card import ContextFallback
from fedctr.server.scoring.columnar import ArrowBatchDecoder
from fedctr.server.scoring.kernels import Kernel, TorchKernel, build_kernel

Inference = Literal["numpy", "torch"]


class ScoringError(FedctrError, ValueError):
    """A warm-up check failed: the fast kernel disagrees with the torch model."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Click probability in float64; saturates instead of overflowing."""
    z = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


class Scorer:
    """Scores rows keyed by spec column names with one model version."""

    def __init__(
        self,
        model: CTRModel,
        spec: FeatureSpec,
        *,
        fallback: ContextFallback,
        inference: Inference = "numpy",
        context_cache_size: int = 100_000,
    ) -> None:
        if model.spec_hash != spec.spec_hash:
            raise ValueError("scorer spec differs from the model's spec")
        self.spec = spec
        self.model = model
        self.fallback = fallback
        self.encoder = FeatureEncoder(spec, context_cache_size=context_cache_size)
        self.arrow = ArrowBatchDecoder(spec, self.encoder)
        self.kernel: Kernel = build_kernel(model, prefer=inference)
        self.inference = "torch" if isinstance(self.kernel, TorchKernel) else "numpy"

    def logits(self, rows: Sequence[Mapping[str, Any]], *, personalized: bool) -> np.ndarray:
        return self._logits(self.encoder.encode(rows, personalized=personalized), personalized)

    def _logits(self, batch: EncodedBatch, personalized: bool) -> np.ndarray:
        out = self.kernel(batch.x_cat, batch.x_num, batch.x_dense)
        if not personalized and self.fallback.logit_shift:
            out = out + np.float32(self.fallback.logit_shift)
        return out

    def score_one(self, row: Mapping[str, Any], *, personalized: bool) -> float:
        """Click probability of one row (the latency path: lists and 1-D arrays only)."""
        cats, nums, dense = self.encoder.encode_one(row, personalized=personalized)
        z = self.kernel.one(cats, nums, dense)
        if not personalized:
            z += self.fallback.logit_shift
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)  # also NaN for NaN
        return e / (1.0 + e)

    def score(self, rows: Sequence[Mapping[str, Any]], *, personalized: bool) -> np.ndarray:
        """Click probabilities (float64, may be non-finite if the model is broken)."""
        return sigmoid(self.logits(rows, personalized=personalized))

    def score_arrow(self, body: bytes, *, personalized: bool, max_rows: int) -> np.ndarray:
        """Click probabilities of an Arrow IPC batch (:mod:`fedctr.server.scoring.columnar`)."""
        batch = self.arrow.decode(body, personalized=personalized, max_rows=max_rows)
        return sigmoid(self._logits(batch, personalized))

    def warm_up(self, *, rows: int = 64, seed: int = 0, atol: float = 1e-5) -> None:
        """Run both paths on random inputs; refuse the model if the kernel disagrees."""
        rng = np.random.default_rng(seed)
        x_cat = (
            np.stack([rng.integers(0, b, rows) for b in self.spec.bucket_sizes], axis=1)
            .reshape(rows, self.spec.num_categorical)
            .astype(np.int64)
        )
        x_num = rng.standard_normal((rows, self.spec.num_numeric)).astype(np.float32)
        x_dense = rng.standard_normal((rows, self.spec.dense_dim())).astype(np.float32)
        fast = self.kernel(x_cat, x_num, x_dense)
        ref = TorchKernel(self.model)(x_cat, x_num, x_dense)
        if not np.allclose(sigmoid(fast), sigmoid(ref), rtol=0, atol=atol, equal_nan=True):
            raise ScoringError(
                f"{self.inference} kernel of model '{self.model.config.name}' disagrees with "
                "its torch forward pass; refusing to serve it"
            )
        row = {}
        for i in range(rows):
            one = self.kernel.one(x_cat[i].tolist(), x_num[i].tolist(), x_dense[i].tolist())
            if not math.isclose(one, float(ref[i]), rel_tol=0, abs_tol=10 * atol):
                raise ScoringError(
                    f"single-row kernel of model '{self.model.config.name}' disagrees with its "
                    "torch forward pass; refusing to serve it"
                )
        self.score([row], personalized=True)
        self.score_one(row, personalized=False)


__all__ = ["Inference", "Scorer", "ScoringError", "sigmoid"]
