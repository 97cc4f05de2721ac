"""The model being served, swapped atomically on reload.

A request reads ``holder.current`` once and uses that :class:`ActiveModel` to the
end, so a swap in between never mixes two versions; the swap itself is a single
reference assignment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.server.registry import LoadedModel, load_verified
from fedctr.server.scoring import BreakerSettings, CircuitBreaker, Scorer
from fedctr.server.scoring.api.core.config import Settings


@dataclass(frozen=True)
class ActiveModel:
    """One verified, warmed-up model version with its scorer and circuit breaker."""

    loaded: LoadedModel
    scorer: Scorer
    breaker: CircuitBreaker
    loaded_at: float

    @property
    def version(self) -> str:
        return self.loaded.version

    def breaker_state(self) -> dict[str, Any]:
        b = self.breaker
        return {
            "state": "open" if b.is_open else "closed",
            "reason": b.reason,
            "trips": b.trips,
            "window_mean": b.window_mean,
            "band": [b.guard.mean_prediction_low, b.guard.mean_prediction_high],
            "base_rate": b.guard.base_rate,
        }


def prepare_model(
    path: Path,
    public_key: Ed25519PublicKey,
    settings: Settings,
    *,
    expected_spec_hash: str | None,
) -> ActiveModel:
    """Verify, rebuild, warm up: everything that can fail happens before the swap."""
    loaded = load_verified(path, public_key, expected_spec_hash=expected_spec_hash)
    scorer = Scorer(
        loaded.model,
        loaded.spec,
        fallback=loaded.card.fallback,
        inference=settings.inference,
        context_cache_size=settings.context_cache_size,
    )
    scorer.warm_up()
    breaker = CircuitBreaker(
        loaded.card.serving,
        BreakerSettings(
            window=settings.breaker_window,
            min_samples=min(settings.breaker_min_samples, settings.breaker_window),
            cooldown_s=settings.breaker_cooldown_s,
        ),
    )
    return ActiveModel(loaded=loaded, scorer=scorer, breaker=breaker, loaded_at=time.time())


@dataclass
class ModelHolder:
    """What is served now, and which versions were refused (so they are not retried).

    ``current`` is the control arm (it follows LATEST); ``canary`` the pinned canary
    version, if one is being rolled out."""

    current: ActiveModel | None = None
    canary: ActiveModel | None = None
    refused: dict[str, str] = field(default_factory=dict)

    def swap(self, new: ActiveModel) -> ActiveModel | None:
        old, self.current = self.current, new
        return old


__all__ = ["ActiveModel", "ModelHolder", "prepare_model"]
