"""When the canary is rolled back: its breaker tripped, or its calibration is off.

The calibration rule waits until the canary's recorded impressions expect
``min_expected_clicks`` clicks (so the normal interval of :mod:`.stats` holds), then
rolls back once the whole ``z``-sigma interval of observed/expected clicks lies
outside ``band``. With ``z = 3`` a calibrated canary's interval sits outside the band
at one check with probability below 0.14% even at the band's edge; the policy is
checked at every click posted back, so over a long ramp that figure is per check, not
per rollout (the false-alarm rate over a replay is measured in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedctr.server.scoring.rollout.board import Rollback
from fedctr.server.scoring.rollout.stats import ArmStats, calibration_interval


@dataclass(frozen=True)
class RollbackPolicy:
    """Thresholds of automatic rollback (``fedctr serve --rollback-*``)."""

    band: tuple[float, float] = (0.8, 1.25)
    z: float = 3.0
    min_expected_clicks: float = 30.0
    on_breaker: bool = True

    def __post_init__(self) -> None:
        low, high = self.band
        if not 0 < low <= 1 <= high:
            raise ValueError(f"calibration band must contain 1 and be positive, got {self.band}")
        if self.z <= 0 or self.min_expected_clicks <= 0:
            raise ValueError("z and min_expected_clicks must be positive")

    def verdict(self, canary: ArmStats, variance: float) -> Rollback:
        """What the canary's figures call for (``Rollback.NONE``: keep serving it)."""
        if self.on_breaker and canary.breaker_trips > 0:
            return Rollback.BREAKER
        if canary.expected_clicks < self.min_expected_clicks:
            return Rollback.NONE
        interval = calibration_interval(canary.clicks, canary.expected_clicks, variance, self.z)
        if interval is not None and (interval[1] < self.band[0] or interval[0] > self.band[1]):
            return Rollback.CALIBRATION
        return Rollback.NONE


__all__ = ["RollbackPolicy"]
