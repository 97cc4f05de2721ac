"""Anomaly detectors: one small class per signal, fed one window at a time.

Each detector sees the counts of one interval (a :class:`Window`) and returns an
:class:`Alert` or None, like Opacus' accountants take one step at a time. The tests
for drops are one-sided binomial z-tests against a baseline learned from the first
warm windows, so their false-alarm rate per window is fixed by ``z`` (4 sigma: about
3e-5 per window under the normal approximation; measured on a replay in the tests
and quoted in the README).
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Alert:
    """One firing: what, how bad, the figures that made it fire. No feature values."""

    name: str
    severity: Severity
    summary: str
    figures: dict[str, float]
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "summary": self.summary,
            "figures": self.figures,
            "at": self.at,
        }


@dataclass(frozen=True)
class Window:
    """Counts over one interval of served traffic and feedback (deltas, not totals)."""

    served: float = 0.0
    score_sum: float = 0.0
    errors: float = 0.0
    recorded: float = 0.0
    clicks: float = 0.0
    conversions: float = 0.0


class Detector(abc.ABC):
    """Sees one window at a time; fires at most once per window."""

    name: str

    @abc.abstractmethod
    def observe(self, window: Window) -> Alert | None: ...


def _drop_z(successes: float, trials: float, baseline: float) -> float:
    """One-sided z of ``successes`` out of ``trials`` against rate ``baseline``."""
    sd = math.sqrt(trials * baseline * (1 - baseline))
    return (successes - trials * baseline) / sd if sd > 0 else 0.0


class RateDrop(Detector):
    """A rate (clicks per impression, conversions per click) falls below its baseline.

    The baseline is the pooled rate of the first ``warmup`` windows with enough
    trials; afterwards each window with at least ``min_expected`` expected successes
    is tested, and fires when its rate is below ``(1 - drop)`` of the baseline by
    more than ``z`` standard deviations (both conditions: large and significant).
    """

    def __init__(
        self,
        name: str,
        *,
        numerator: str,
        denominator: str,
        drop: float = 0.3,
        z: float = 4.0,
        warmup: int = 5,
        min_expected: float = 50.0,
    ) -> None:
        self.name = name
        self.numerator, self.denominator = numerator, denominator
        self.drop, self.z, self.warmup, self.min_expected = drop, z, warmup, min_expected
        self._warm: list[tuple[float, float]] = []
        self.baseline: float | None = None

    def observe(self, window: Window) -> Alert | None:
        hits, trials = getattr(window, self.numerator), getattr(window, self.denominator)
        if self.baseline is None:
            if trials > 0:
                self._warm.append((hits, trials))
            if len(self._warm) >= self.warmup:
                total = sum(t for _, t in self._warm)
                self.baseline = sum(h for h, _ in self._warm) / total if total else None
            return None
        if trials * self.baseline < self.min_expected or not 0 < self.baseline < 1:
            return None
        rate = hits / trials
        z = _drop_z(hits, trials, self.baseline)
        if rate < (1 - self.drop) * self.baseline and z < -self.z:
            return Alert(
                self.name,
                "critical",
                f"{self.numerator} per {self.denominator} fell to {rate:.4f} from a baseline "
                f"of {self.baseline:.4f} (z = {z:.1f})",
                {"rate": rate, "baseline": self.baseline, "z": z, "trials": trials},
            )
        return None


class PredictionDrift(Detector):
    """The mean served score leaves the band the model card declares."""

    name = "prediction_drift"

    def __init__(self, low: float, high: float, *, min_served: int = 200) -> None:
        self.low, self.high, self.min_served = low, high, min_served

    def observe(self, window: Window) -> Alert | None:
        if window.served < self.min_served:
            return None
        mean = window.score_sum / window.served
        if self.low <= mean <= self.high:
            return None
        return Alert(
            self.name,
            "warning",
            f"mean prediction {mean:.4f} is outside the card's band "
            f"[{self.low:.4f}, {self.high:.4f}]",
            {"mean_prediction": mean, "low": self.low, "high": self.high},
        )


class ErrorRate(Detector):
    """Requests failing while scoring exceed ``threshold`` of a window."""

    name = "error_rate"

    def __init__(self, threshold: float = 0.01, *, min_requests: int = 100) -> None:
        self.threshold, self.min_requests = threshold, min_requests

    def observe(self, window: Window) -> Alert | None:
        requests = window.served + window.errors
        if requests < self.min_requests:
            return None
        rate = window.errors / requests
        if rate <= self.threshold:
            return None
        return Alert(
            self.name,
            "critical",
            f"{rate:.1%} of scoring requests failed (threshold {self.threshold:.1%})",
            {"error_rate": rate, "requests": requests},
        )


def ctr_drop(**options: float) -> RateDrop:
    """Clicks per recorded impression."""
    return RateDrop("ctr_drop", numerator="clicks", denominator="recorded", **options)


def cpa_spike(**options: float) -> RateDrop:
    """Conversions per click: at a fixed cost per click, CPA = CPC / this rate, so a
    CPA spike is this rate's drop (``drop`` 0.3: CPA up by more than 43%)."""
    return RateDrop("cpa_spike", numerator="conversions", denominator="clicks", **options)


def partner_shortfall(
    run_id: str, round_number: int, contributed: int, expected: int
) -> Alert | None:
    """A federation round aggregated fewer partners than the platform expects."""
    if contributed >= expected:
        return None
    return Alert(
        "partner_shortfall",
        "warning" if contributed > 0 else "critical",
        f"run {run_id} round {round_number}: {contributed} of {expected} expected partners "
        "contributed",
        {"round": round_number, "contributed": contributed, "expected": expected},
    )


__all__ = [
    "Alert",
    "Detector",
    "ErrorRate",
    "PredictionDrift",
    "RateDrop",
    "Window",
    "cpa_spike",
    "ctr_drop",
    "partner_shortfall",
]
