"""Hot reload: watch ``LATEST`` with a cheap ``stat``; verify, warm up and swap in a thread.

A refused version (tampered, unsigned, other spec, unbuildable) is logged once
with the reason and remembered; the service keeps serving the last good model
until ``LATEST`` names another version.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import anyio.to_thread
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.errors import FedctrError
from fedctr.server.registry import LATEST_FILE, read_latest
from fedctr.server.registry.layout import MODELS_DIR
from fedctr.server.scoring.api.core.config import Settings
from fedctr.server.scoring.api.holder import ModelHolder, prepare_model
from fedctr.server.scoring.api.metrics import ServiceMetrics

log = logging.getLogger("fedctr.serve")


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def reload_once(
    holder: ModelHolder,
    settings: Settings,
    public_key: Ed25519PublicKey,
    metrics: ServiceMetrics,
    *,
    spec_hash: str,
) -> bool:
    """Load the version LATEST names if it is new; True if a new model is now served."""
    try:
        version = read_latest(settings.registry)
    except FedctrError as exc:
        log.warning("model registry: %s", exc)
        return False
    current = holder.current.version if holder.current else None
    if version == current or version in holder.refused:
        return False
    try:
        active = prepare_model(
            settings.registry / MODELS_DIR / version,
            public_key,
            settings,
            expected_spec_hash=spec_hash,
        )
    except FedctrError as exc:  # ScoringError included
        holder.refused[version] = type(exc).__name__
        metrics.reloads.labels("refused").inc()
        log.error(
            "refusing model %s (%s): %s; still serving %s",
            version,
            type(exc).__name__,
            exc,
            current or "nothing",
        )
        return False
    holder.swap(active)
    metrics.model_swapped(current, active.version)
    log.info(
        "serving model %s (%s, spec %s, %s inference)%s",
        active.version,
        active.loaded.card.model_name,
        spec_hash[:12],
        active.scorer.inference,
        f", replacing {current}" if current else "",
    )
    return True


async def watch_registry(
    holder: ModelHolder,
    settings: Settings,
    public_key: Ed25519PublicKey,
    metrics: ServiceMetrics,
    *,
    spec_hash: str,
) -> None:
    """Poll forever (cancel to stop); loading runs in a worker thread."""
    latest = settings.registry / LATEST_FILE
    seen = None
    while True:
        key = _stat_key(latest)
        if key != seen:
            seen = key
            try:
                await anyio.to_thread.run_sync(
                    lambda: reload_once(holder, settings, public_key, metrics, spec_hash=spec_hash)
                )
            except Exception:  # never let the watcher die; the old model keeps serving
                log.exception("model reload failed unexpectedly")
        await asyncio.sleep(settings.poll_interval_s)


__all__ = ["reload_once", "watch_registry"]
