"""The FastAPI application factory of the scoring service.

``create_app`` fixes the feature spec for the life of the process (``--spec``, or
the spec of the model LATEST names at start-up, verified first): the request
schema and the OpenAPI document are generated from it, and every later model
must carry the same spec hash or it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from fedctr.errors import FedctrError
from fedctr.privacy.signing import load_public_key
from fedctr.server.monitoring import AlertLog, WebhookNotifier
from fedctr.server.registry import resolve_version_dir
from fedctr.server.registry.cli import load_spec_arg
from fedctr.server.registry.layout import MODELS_DIR
from fedctr.server.scoring.api.core.config import Settings, get_settings
from fedctr.server.scoring.api.errors import install_error_handlers
from fedctr.server.scoring.api.fastpath import ScoringFastPath
from fedctr.server.scoring.api.handlers import ScoreHandlers
from fedctr.server.scoring.api.holder import ModelHolder, prepare_model
from fedctr.server.scoring.api.metrics import MetricsMiddleware, ServiceMetrics
from fedctr.server.scoring.api.monitor import TrafficMonitor, default_detectors, watch_traffic
from fedctr.server.scoring.api.reloader import watch_registry
from fedctr.server.scoring.api.routes import (
    build_score_router,
    health,
    metrics,
    model,
    rollout,
)
from fedctr.server.scoring.api.schemas import RequestSchemas, build_request_schemas
from fedctr.server.scoring.rollout import Board, RollbackPolicy, Rollout, TrafficSplit

log = logging.getLogger("fedctr.serve")
API_PREFIX = "/v1"


class ServeConfigError(FedctrError):
    """The service cannot start: no spec to validate requests with, or bad settings."""


def _install_openapi(app: FastAPI, schemas: RequestSchemas) -> None:
    """Add the spec-generated request models to ``components/schemas``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        for cls in (schemas.score, schemas.batch):
            schema = TypeAdapter(cls).json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[cls.__name__] = schema
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _rollout(settings: Settings, has_canary: bool) -> Rollout:
    """The A/B rollout over the board ``fedctr serve`` created for its workers, or a
    private one (one process)."""
    if settings.rollout_state is not None:
        board = Board.open(settings.rollout_state)
    else:
        share = settings.canary_share if has_canary else 0.0
        board = Board.create(None, share=share, capacity=settings.impression_capacity)
    salt = bytes.fromhex(settings.split_salt) if settings.split_salt else os.urandom(16)
    policy = RollbackPolicy(
        band=(settings.rollback_band_low, settings.rollback_band_high),
        z=settings.rollback_z,
        min_expected_clicks=settings.rollback_min_expected_clicks,
    )
    return Rollout(
        board, TrafficSplit(salt), split_key=settings.split_key, policy=policy,
        has_canary=has_canary,
    )  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app (uvicorn calls this in each worker with ``factory=True``)."""
    settings = settings or get_settings()
    public_key = load_public_key(settings.public_key)
    holder = ModelHolder()
    if settings.spec is not None:
        spec = load_spec_arg(settings.spec)
    else:
        try:
            resolve_version_dir(settings.registry)
            initial = prepare_model(
                settings.registry, public_key, settings, expected_spec_hash=None
            )
        except FedctrError as exc:
            raise ServeConfigError(
                f"cannot start without a feature spec: {exc}. Publish a model first or pass "
                "--spec so the service can start and wait for one"
            ) from exc
        spec = initial.loaded.spec
        holder.swap(initial)
        log.info(
            "serving model %s (%s, spec %s, %s inference)",
            initial.version,
            initial.loaded.card.model_name,
            spec.spec_hash[:12],
            initial.scorer.inference,
        )
    if settings.canary is not None:
        try:
            holder.canary = prepare_model(
                settings.registry / MODELS_DIR / settings.canary,
                public_key,
                settings,
                expected_spec_hash=spec.spec_hash,
            )
        except FedctrError as exc:
            raise ServeConfigError(f"cannot load canary {settings.canary}: {exc}") from exc
        log.info("canary %s loaded", settings.canary)
    schemas = build_request_schemas(spec, max_batch_rows=settings.max_batch_rows)
    service_metrics = ServiceMetrics()
    ab = _rollout(settings, has_canary=holder.canary is not None)
    service_metrics.watch_rollout(ab)
    if holder.current is not None:
        service_metrics.model_swapped(None, holder.current.version)

    alert_log = AlertLog(
        None if ab.board.path is None else ab.board.path.with_name("alerts.jsonl"),
        notifiers=(
            (WebhookNotifier(settings.alert_webhook, service="fedctr-serve"),)
            if settings.alert_webhook
            else ()
        ),
    )
    band = (
        (holder.current.breaker.guard.mean_prediction_low,
         holder.current.breaker.guard.mean_prediction_high)
        if holder.current is not None
        else (0.0, 1.0)
    )  # fmt: skip
    monitor = TrafficMonitor(ab, alert_log, default_detectors(band))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(
                watch_registry(
                    holder, settings, public_key, service_metrics, spec_hash=spec.spec_hash
                )
            ),
            asyncio.create_task(watch_traffic(monitor, settings.alert_interval_s)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="fedctr scoring API",
        version="1",
        description=(
            "Scores impressions with the signed global model of the federation. Feature "
            f"spec '{spec.name}' ({spec.spec_hash[:12]}). Request feature values are never "
            "logged or stored."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = service_metrics
    app.state.spec = spec
    app.state.rollout = ab
    app.state.alerts = alert_log
    app.state.monitor = monitor
    handlers = ScoreHandlers(holder=holder, metrics=service_metrics, schemas=schemas, rollout=ab)
    known = {"/openapi.json", "/docs", "/redoc"}
    for router, prefix in (
        (build_score_router(handlers, schemas, max_body_bytes=settings.max_body_bytes), API_PREFIX),
        (model.router, API_PREFIX),
        (health.router, API_PREFIX),
        (rollout.router, API_PREFIX),
        (metrics.router, ""),
    ):
        app.include_router(router, prefix=prefix)
        known.update(prefix + r.path for r in router.routes if hasattr(r, "path"))
    install_error_handlers(app)
    if settings.fast_path:
        app.add_middleware(
            ScoringFastPath,
            handlers=handlers,
            routes={f"{API_PREFIX}/score": "single", f"{API_PREFIX}/score/batch": "batch"},
            limit=settings.max_body_bytes,
        )
    app.add_middleware(MetricsMiddleware, metrics=service_metrics, routes=frozenset(known))
    _install_openapi(app, schemas)
    return app


__all__ = ["API_PREFIX", "ServeConfigError", "create_app"]
