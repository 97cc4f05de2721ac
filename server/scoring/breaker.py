"""Circuit breaker: serve the card's base rate when the model misbehaves, recover alone.

Trips on (a) any non-finite output, (b) the mean personalised prediction over a
sliding window of the last ``window`` scores leaving the band recorded in the
model card at publish time. While open, the model still runs in the shadow so the
window keeps moving; after ``cooldown_s`` without a non-finite output and with
the window mean back in band, it closes again. Each server process keeps its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedctr.privacy.card import ServingGuard

NON_FINITE = "non_finite_output"
OUT_OF_BAND = "mean_prediction_out_of_band"


@dataclass(frozen=True)
class BreakerSettings:
    """Window length, minimum evidence before judging drift, time before recovery."""

    window: int = 2000
    min_samples: int = 200
    cooldown_s: float = 5.0

    def __post_init__(self) -> None:
        if self.window < 1 or not 1 <= self.min_samples <= self.window:
            raise ValueError("breaker needs window >= 1 and 1 <= min_samples <= window")
        if not self.cooldown_s >= 0:
            raise ValueError("breaker cooldown_s must be >= 0")


class CircuitBreaker:
    """Decides per call whether model scores or the conservative base rate go out."""

    def __init__(
        self,
        guard: ServingGuard,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.guard = guard
        self.settings = settings
        self._clock = clock
        self._buf = [0.0] * settings.window
        self._pos = 0
        self._count = 0
        self._sum = 0.0
        self._pushes = 0
        self._opened_at: float | None = None
        self._last_non_finite = -np.inf
        self.reason: str | None = None
        self.trips = 0

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def window_mean(self) -> float | None:
        return self._sum / self._count if self._count else None

    def _push(self, values: list[float]) -> None:
        """Append to the ring; unfilled slots hold 0, so the running sum stays exact."""
        w = self.settings.window
        values = values[-w:]
        first = min(len(values), w - self._pos)
        for chunk in (values[:first], values[first:]):
            if not chunk:
                continue
            end = self._pos + len(chunk)
            self._sum += sum(chunk) - sum(self._buf[self._pos : end])
            self._buf[self._pos : end] = chunk
            self._pos = end % w
        self._count = min(w, self._count + len(values))
        self._pushes += len(values)
        if self._pushes >= w:  # re-sum now and then so float error cannot accumulate
            self._sum = math.fsum(self._buf)
            self._pushes = 0

    def _push_one(self, value: float) -> None:
        pos = self._pos
        self._sum += value - self._buf[pos]
        self._buf[pos] = value
        self._pos = (pos + 1) % self.settings.window
        if self._count < self.settings.window:
            self._count += 1
        self._pushes += 1
        if self._pushes >= self.settings.window:
            self._sum = math.fsum(self._buf)
            self._pushes = 0

    def _in_band(self) -> bool:
        if self._count < self.settings.min_samples:
            return True
        mean = self._sum / self._count
        return self.guard.mean_prediction_low <= mean <= self.guard.mean_prediction_high

    def _trip(self, reason: str, now: float) -> None:
        if self._opened_at is None:
            self.trips += 1
        self._opened_at = now
        self.reason = reason

    def _settle(self, now: float) -> bool:
        """Close after the cooldown if the evidence allows; return whether it is open."""
        if self._opened_at is not None and (
            now - self._opened_at >= self.settings.cooldown_s
            and now - self._last_non_finite >= self.settings.cooldown_s
            and self._in_band()
        ):
            self._opened_at = None
            self.reason = None
        return self._opened_at is not None

    def _judge_drift(self, now: float) -> None:
        if not self._in_band() and (self._opened_at is None or self.reason != NON_FINITE):
            self._trip(OUT_OF_BAND, now)

    def apply(self, scores: np.ndarray, *, track: bool) -> tuple[np.ndarray, bool]:
        """Return the scores to serve and whether they are the conservative base rate.

        ``track``: feed finite scores into the drift window (personalised traffic only:
        the card's band describes the personalised model).
        """
        now = self._clock()
        finite = np.isfinite(scores)
        all_finite = bool(finite.all())
        if not all_finite:
            self._last_non_finite = now
            self._trip(NON_FINITE, now)
        if track:
            self._push((scores if all_finite else scores[finite]).tolist())
            self._judge_drift(now)
        if self._settle(now):
            return np.full(scores.shape, self.guard.base_rate), True
        return scores, False

    def apply_one(self, score: float, *, track: bool) -> tuple[float, bool]:
        """:meth:`apply` for one score, without numpy."""
        now = self._clock()
        if not math.isfinite(score):
            self._last_non_finite = now
            self._trip(NON_FINITE, now)
        elif track:
            self._push_one(score)
            self._judge_drift(now)
        if self._settle(now):
            return self.guard.base_rate, True
        return score, False


__all__ = ["NON_FINITE", "OUT_OF_BAND", "BreakerSettings", "CircuitBreaker"]
