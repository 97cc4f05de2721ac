"""Prometheus metrics of the scoring service: counts and latencies, never feature values.

One :class:`ServiceMetrics` per app (its own ``CollectorRegistry``: no module-level
state). With several uvicorn workers, ``fedctr serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges every worker's files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fedctr.server.scoring.rollout import Arm, Rollout

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class RolloutCollector(Collector):
    """Per-arm figures read from the rollout's shared board at scrape time: already
    summed over every worker, so the same in single- and multi-process mode."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout

    def collect(self) -> Iterator[Any]:
        board = self.rollout.board
        yield GaugeMetricFamily("fedctr_canary_share", "Canary share of keyed traffic", board.share)
        yield GaugeMetricFamily(
            "fedctr_canary_rolled_back",
            "1 once the canary was rolled back",
            int(board.rollback > 0),
        )
        counts = {
            "fedctr_arm_scored": ("Scores answered per arm", "served"),
            "fedctr_arm_recorded_impressions": ("Impressions recorded for feedback", "recorded"),
            "fedctr_arm_clicks": ("Clicks joined to recorded impressions", "clicks"),
            "fedctr_arm_conversions": ("Conversions joined likewise", "conversions"),
            "fedctr_arm_errors": ("Requests that failed while scoring", "errors"),
            "fedctr_arm_breaker_trips": ("Circuit breaker trips", "breaker_trips"),
        }
        gauges = {
            "fedctr_arm_expected_clicks": ("Sum of recorded predictions", "expected_clicks"),
            "fedctr_arm_mean_prediction": ("Mean score answered", "mean_prediction"),
            "fedctr_arm_ctr": ("Observed clicks per recorded impression", "ctr"),
            "fedctr_arm_calibration": ("Observed over expected clicks", "calibration"),
        }
        arms = self.rollout.arms()
        for name, (doc, field) in counts.items():
            family = CounterMetricFamily(name, doc, labels=["arm"])
            for arm in Arm:
                family.add_metric([arm.label], getattr(arms[arm], field))
            yield family
        for name, (doc, field) in gauges.items():
            family = GaugeMetricFamily(name, doc, labels=["arm"])
            for arm in Arm:
                value = getattr(arms[arm], field)
                if value is not None:
                    family.add_metric([arm.label], value)
            yield family


class ServiceMetrics:
    """The service's counters, histogram and gauges."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "fedctr_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "fedctr_http_request_duration_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter("fedctr_scored_rows", "Rows scored", ["personalized"], registry=r)
        self.conservative = Counter(
            "fedctr_conservative_rows", "Rows answered with the card's base rate", registry=r
        )
        self.breaker_open = Gauge(
            "fedctr_circuit_breaker_open",
            "1 while the circuit breaker serves the base rate",
            registry=r,
            multiprocess_mode="max",
        )
        self.model = Gauge(
            "fedctr_model_info",
            "1 for the model version being served",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.reloads = Counter(
            "fedctr_model_loads", "Model load attempts by outcome", ["outcome"], registry=r
        )
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._rows = {True: self.rows.labels("true"), False: self.rows.labels("false")}
        self._open: bool | None = None
        self._rollout: RolloutCollector | None = None

    def watch_rollout(self, rollout: Rollout) -> None:
        """Export the rollout's per-arm figures with every scrape."""
        self._rollout = RolloutCollector(rollout)
        self.registry.register(self._rollout)

    def breaker_state(self, is_open: bool) -> None:
        if is_open is not self._open:
            self._open = is_open
            self.breaker_open.set(int(is_open))

    def count_rows(self, n: int, *, personalized: bool, conservative: bool) -> None:
        self._rows[personalized].inc(n)
        if conservative:
            self.conservative.inc(n)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            children = self._children[(route, status)] = (
                self.requests.labels(route, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def model_swapped(self, old: str | None, new: str) -> None:
        if old is not None:
            self.model.labels(old).set(0)
        self.model.labels(new).set(1)
        self.reloads.labels("loaded").inc()

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            if self._rollout is not None:
                merged.register(self._rollout)
            return generate_latest(merged)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: request count and latency per known route (others: "other")."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.routes else "other"
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(route, status, time.perf_counter() - start)


__all__ = ["MetricsMiddleware", "ServiceMetrics"]
