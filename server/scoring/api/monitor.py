"""The scoring service's alert loop: every interval, one worker turns the rollout
board's counters into per-arm windows and runs the detectors on them.

The board's counters are totals over every worker, so one worker is enough: the one
holding an exclusive lock on the board file runs the loop (the others try again each
interval, so if it dies another takes over). Alerts go to the alert log next to the
board, which every worker reads for ``GET /v1/alerts``.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from fedctr.server.monitoring import (
    Alert,
    AlertLog,
    Detector,
    ErrorRate,
    PredictionDrift,
    Window,
    cpa_spike,
    ctr_drop,
)
from fedctr.server.scoring.rollout import Arm, Counter, Rollout

log = logging.getLogger("fedctr.serve.alerts")


def window_of(delta: np.ndarray) -> Window:
    """One arm's counters over an interval (``[counter]`` deltas)."""
    return Window(
        served=float(delta[Counter.SERVED]),
        score_sum=float(delta[Counter.SCORE_SUM]),
        errors=float(delta[Counter.ERRORS]),
        recorded=float(delta[Counter.RECORDED]),
        clicks=float(delta[Counter.CLICKS]),
        conversions=float(delta[Counter.CONVERSIONS]),
    )


class TrafficMonitor:
    """Detectors per arm over the board's counter deltas."""

    def __init__(
        self, rollout: Rollout, alerts: AlertLog, detectors: Callable[[], list[Detector]]
    ) -> None:
        self.rollout = rollout
        self.alerts = alerts
        self._detectors = {arm: detectors() for arm in Arm}
        self._last = rollout.board.totals()

    def start_from_now(self) -> None:
        """Forget traffic so far: the next window starts now (a worker taking over)."""
        self._last = self.rollout.board.totals()

    def tick(self) -> list[Alert]:
        """One interval: the alerts that fired (the log decides which are new)."""
        totals = self.rollout.board.totals()
        delta, self._last = totals - self._last, totals
        fired = []
        for arm in Arm:
            window = window_of(delta[int(arm)])
            for detector in self._detectors[arm]:
                alert = detector.observe(window)
                if alert is not None:
                    fired.append(
                        Alert(
                            f"{alert.name}:{arm.label}",
                            alert.severity,
                            f"{arm.label} arm: {alert.summary}",
                            alert.figures,
                            alert.at,
                        )
                    )
        self.alerts.window(fired)
        return fired


def default_detectors(band: tuple[float, float]) -> Callable[[], list[Detector]]:
    """CTR drop, CPA spike, prediction drift outside the card's band, error rate."""
    return lambda: [ctr_drop(), cpa_spike(), PredictionDrift(*band), ErrorRate()]


def _try_lock(path: Path | None) -> IO[bytes] | bool | None:
    """True for a private board (no file: this process is the only one). The lock is a
    file of its own: the board file's lock guards claiming counter rows."""
    if path is None:
        return True
    handle = open(path.with_suffix(".monitor.lock"), "ab")  # noqa: SIM115  (held while running)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


async def watch_traffic(monitor: TrafficMonitor, interval_s: float) -> None:
    """Run ``monitor`` every ``interval_s`` while this worker holds the board's lock."""
    lock = None
    try:
        while True:
            await asyncio.sleep(interval_s)
            if lock is None:
                lock = _try_lock(monitor.rollout.board.path)
                if lock is None:
                    continue
                monitor.start_from_now()
                continue
            try:
                monitor.tick()
            except Exception:  # an alert loop must never take the service down
                log.exception("alert check failed")
    finally:
        if lock not in (None, True):
            lock.close()  # type: ignore[union-attr]


__all__ = ["TrafficMonitor", "default_detectors", "watch_traffic", "window_of"]
