"""The operator console: a read-only FastAPI app (``fedctr console``).

``GET /`` is the page, ``GET /api/overview`` its numbers as JSON. It binds to
127.0.0.1 by default; on any other address it refuses to start without a token, and
with a token every request must carry it (``Authorization: Bearer`` or ``?token=``,
for a browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from fedctr.errors import FedctrError
from fedctr.privacy.signing import load_public_key
from fedctr.server.console.overview import VersionCache, gather, read_runs
from fedctr.server.console.page import render
from fedctr.server.monitoring import Alert, Notifier, WebhookNotifier


class ConsoleConfigError(FedctrError):
    """The console cannot start as configured."""


@dataclass(frozen=True)
class ConsoleConfig:
    """Where the console reads from, and who may read it."""

    runs_dir: Path | None = None
    registry: Path | None = None
    public_key: Path | None = None
    scoring_url: str | None = None
    token: str | None = None
    expected_partners: int | None = None
    refresh_s: int = 10
    alert_webhook: str | None = None  # federation alerts (partner shortfall) go here
    alert_interval_s: float = 10.0

    def check_bind(self, host: str) -> None:
        """Refuse a non-loopback address without a token."""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback and not self.token:
            raise ConsoleConfigError(
                f"the console would listen on {host} without a token: pass --token-file, or "
                "bind to 127.0.0.1 (the default)"
            )


class FederationAlerts:
    """Notifies each round's partner-shortfall alert once (keyed by run and round)."""

    def __init__(self, config: ConsoleConfig, notifier: Notifier) -> None:
        self.config = config
        self.notifier = notifier
        self.sent: set[tuple[str, int]] = set()

    def check(self) -> list[Alert]:
        fresh = []
        for run in read_runs(self.config.runs_dir, self.config.expected_partners):
            for raw in run.alerts:
                key = (run.run_id, int(raw["figures"]["round"]))
                if key not in self.sent:
                    self.sent.add(key)
                    alert = Alert(
                        raw["name"], raw["severity"], raw["summary"], raw["figures"], raw["at"]
                    )
                    self.notifier.send(alert)
                    fresh.append(alert)
        return fresh


async def _watch(alerts: FederationAlerts, interval_s: float) -> None:
    while True:
        await asyncio.to_thread(alerts.check)
        await asyncio.sleep(interval_s)


def create_console(config: ConsoleConfig) -> FastAPI:
    if config.registry is not None and config.public_key is None:
        raise ConsoleConfigError("--registry needs --public-key to verify model signatures")
    public_key = load_public_key(config.public_key) if config.public_key else None
    federation_alerts = (
        FederationAlerts(config, WebhookNotifier(config.alert_webhook, service="fedctr-console"))
        if config.alert_webhook and config.runs_dir is not None
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if federation_alerts is None:
            yield
            return
        task = asyncio.create_task(_watch(federation_alerts, config.alert_interval_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="fedctr console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.federation_alerts = federation_alerts

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if config.token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            given = given if scheme.lower() == "bearer" else request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), config.token.encode()):
                return JSONResponse({"detail": "console token required"}, status_code=401)
        return await call_next(request)

    versions: VersionCache = {}

    def overview() -> Any:
        return gather(
            runs_dir=config.runs_dir,
            registry=config.registry,
            public_key=public_key,
            scoring_url=config.scoring_url,
            expected_partners=config.expected_partners,
            version_cache=versions,
        )

    @app.get("/api/overview")
    def api_overview() -> dict[str, Any]:  # sync: reads files, verifies signatures
        return overview().to_json()

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(render(overview(), refresh_s=config.refresh_s))

    return app


__all__ = ["ConsoleConfig", "ConsoleConfigError", "FederationAlerts", "create_console"]
