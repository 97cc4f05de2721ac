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
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from fedctr.errors import FedctrError
from fedctr.privacy.signing import load_public_key
from fedctr.server.registry import resolve_version_dir
from fedctr.server.registry.cli import load_spec_arg
from fedctr.server.scoring.api.core.config import Settings, get_settings
from fedctr.server.scoring.api.errors import install_error_handlers
from fedctr.server.scoring.api.fastpath import ScoringFastPath
from fedctr.server.scoring.api.handlers import ScoreHandlers
from fedctr.server.scoring.api.holder import ModelHolder, prepare_model
from fedctr.server.scoring.api.metrics import MetricsMiddleware, ServiceMetrics
from fedctr.server.scoring.api.reloader import watch_registry
from fedctr.server.scoring.api.routes import build_score_router, health, metrics, model
from fedctr.server.scoring.api.schemas import RequestSchemas, build_request_schemas

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
    schemas = build_request_schemas(spec, max_batch_rows=settings.max_batch_rows)
    service_metrics = ServiceMetrics()
    if holder.current is not None:
        service_metrics.model_swapped(None, holder.current.version)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(
            watch_registry(holder, settings, public_key, service_metrics, spec_hash=spec.spec_hash)
        )
        try:
            yield
        finally:
            task.cancel()
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
    handlers = ScoreHandlers(holder=holder, metrics=service_metrics, schemas=schemas)
    known = {"/openapi.json", "/docs", "/redoc"}
    for router, prefix in (
        (build_score_router(handlers, schemas, max_body_bytes=settings.max_body_bytes), API_PREFIX),
        (model.router, API_PREFIX),
        (health.router, API_PREFIX),
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
