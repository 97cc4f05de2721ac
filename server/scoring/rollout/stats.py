"""Per-arm figures from the shared counters, each with its confidence interval.

Observed CTR is clicks over recorded impressions (Wilson score interval).
Calibration is observed over expected clicks, ``C / sum(p)``: 1 for a calibrated
model. If the model were calibrated, the click count ``C`` would be a sum of
independent Bernoulli(p_i) with variance ``sum p(1-p)``; the interval is
``(C +- z * sqrt(sum p(1-p))) / sum(p)``, the normal approximation, valid once the
expected clicks are in the tens (the rollback policy waits for that).
Clicks posted after the figures are read are not in them: on delayed feedback both
figures lag, low.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fedctr.server.scoring.rollout.board import Counter

Z95 = 1.959963984540054


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (``(0, 1)`` with no trials)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def calibration_interval(
    clicks: float, expected: float, variance: float, z: float = Z95
) -> tuple[float, float] | None:
    """Interval for observed/expected clicks; None before any expected click."""
    if expected <= 0:
        return None
    half = z * math.sqrt(max(variance, 0.0))
    return max(0.0, (clicks - half) / expected), (clicks + half) / expected


@dataclass(frozen=True)
class ArmStats:
    """One arm's figures (what ``GET /v1/arms`` reports per arm)."""

    served: int
    conservative: int
    errors: int
    mean_prediction: float | None
    recorded: int
    expected_clicks: float
    clicks: int
    conversions: int
    ctr: float | None
    ctr_ci95: tuple[float, float] | None
    calibration: float | None
    calibration_ci95: tuple[float, float] | None
    breaker_trips: int

    @classmethod
    def from_counters(cls, c: np.ndarray) -> ArmStats:
        served, recorded = int(c[Counter.SERVED]), int(c[Counter.RECORDED])
        clicks, expected = int(c[Counter.CLICKS]), float(c[Counter.EXPECTED])
        return cls(
            served=served,
            conservative=int(c[Counter.CONSERVATIVE]),
            errors=int(c[Counter.ERRORS]),
            mean_prediction=float(c[Counter.SCORE_SUM]) / served if served else None,
            recorded=recorded,
            expected_clicks=expected,
            clicks=clicks,
            conversions=int(c[Counter.CONVERSIONS]),
            ctr=clicks / recorded if recorded else None,
            ctr_ci95=wilson(clicks, recorded) if recorded else None,
            calibration=clicks / expected if expected > 0 else None,
            calibration_ci95=calibration_interval(clicks, expected, float(c[Counter.VARIANCE])),
            breaker_trips=int(c[Counter.BREAKER_TRIPS]),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["Z95", "ArmStats", "calibration_interval", "wilson"]
