"""What the operator console shows, gathered from where it lives: the platform's run
folders (rounds.jsonl), the model registry (each version verified against the
platform's public key), and the scoring service's rollout and alerts (over HTTP).

Everything here is already public to the operator: per-round aggregates, each
partner's declared epsilon as its reply and ledger carry it, model cards. No partner
data, no update values. The JSON of :class:`Overview` is the console's API, and the
page renders exactly those numbers.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.errors import FedctrError
from fedctr.server.monitoring import partner_shortfall
from fedctr.server.platform.rounds import read_round_log
from fedctr.server.registry import load_verified
from fedctr.server.registry.layout import MODELS_DIR, list_versions, read_latest

log = logging.getLogger("fedctr.console")
ROUND_LOG = "rounds.jsonl"


@dataclass(frozen=True)
class RoundRow:
    round: int
    aggregated: bool
    contributors: int
    refusals: int
    auc: float | None
    logloss: float | None


@dataclass(frozen=True)
class EpsilonPoint:
    round: int
    epsilon: float
    budget: float


@dataclass(frozen=True)
class RunView:
    run_id: str
    rounds: list[RoundRow]
    epsilon: dict[str, list[EpsilonPoint]]  # partner id -> cumulative epsilon by round
    alerts: list[dict[str, Any]]
    expected_partners: int


@dataclass(frozen=True)
class VersionView:
    version: str
    latest: bool
    signature: str  # "verified", or why it failed
    run_id: str | None
    created_at: str | None
    model: str | None
    partners: list[dict[str, Any]]
    auc: float | None


@dataclass(frozen=True)
class Overview:
    runs: list[RunView]
    versions: list[VersionView]
    serving: dict[str, Any] | None
    serving_error: str | None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _round_row(raw: dict[str, Any]) -> RoundRow:
    metrics = raw.get("global_metrics") or {}
    return RoundRow(
        round=int(raw["round"]),
        aggregated=bool(raw.get("aggregated")),
        contributors=len(raw.get("train") or ()),
        refusals=len(raw.get("failures") or ()) + len(raw.get("rejected") or ()),
        auc=metrics.get("auc"),
        logloss=metrics.get("logloss"),
    )


def read_run(folder: Path, expected_partners: int | None = None) -> RunView:
    """One run's rounds, its partners' cumulative epsilon, and partner-shortfall alerts.

    ``expected_partners``: how many should contribute (default: every partner that
    contributed to any round of the run)."""
    raw = read_round_log(folder / ROUND_LOG)
    rounds = [_round_row(r) for r in raw]
    epsilon: dict[str, list[EpsilonPoint]] = {}
    for r in raw:
        for t in r.get("train") or ():
            reply = t.get("reply") or {}
            if t.get("epsilon") is None:
                continue
            budget = (reply.get("budget") or {}).get("epsilon")
            epsilon.setdefault(t["partner_id"], []).append(
                EpsilonPoint(int(r["round"]), float(t["epsilon"]), float(budget or "nan"))
            )
    expected = expected_partners or len(epsilon)
    alerts = [
        a.to_json()
        for row in rounds
        if (a := partner_shortfall(folder.name, row.round, row.contributors, expected))
    ]
    return RunView(folder.name, rounds, epsilon, alerts, expected)


VersionCache = dict[tuple[str, tuple[tuple[str, int, int], ...]], "VersionView"]


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and mtime of each file: a version's files change only if tampered."""
    return tuple(
        (p.name, st.st_size, st.st_mtime_ns)
        for p in sorted(folder.iterdir())
        if p.is_file() and (st := p.stat())
    )


def _version_view(
    registry: Path, version: str, latest: str | None, public_key: Ed25519PublicKey
) -> VersionView:
    try:
        loaded = load_verified(registry / MODELS_DIR / version, public_key, expected_spec_hash=None)
    except (FedctrError, OSError, ValueError) as exc:
        failed = f"FAILED: {type(exc).__name__}: {exc}"
        return VersionView(version, version == latest, failed, None, None, None, [], None)
    card = loaded.card
    metrics = card.metrics.get("platform_holdout") or {}
    return VersionView(
        version=version,
        latest=version == latest,
        signature="verified",
        run_id=card.run_id,
        created_at=card.created_at.isoformat(),
        model=card.model_name,
        partners=[
            {"partner_id": p.partner_id, "epsilon": p.epsilon, "delta": p.delta}
            for p in card.partners
        ],
        auc=metrics.get("auc"),
    )


def read_versions(
    registry: Path, public_key: Ed25519PublicKey, cache: VersionCache | None = None
) -> list[VersionView]:
    """Every published version, newest first, each verified (signature, weights hash).

    Verifying rebuilds the model, so with a ``cache`` a version is verified again only
    when one of its files changed (the page reloads every few seconds)."""
    try:
        latest = read_latest(registry)
    except FedctrError:
        latest = None
    out = []
    for version in reversed(list_versions(registry)):
        key = (version, _fingerprint(registry / MODELS_DIR / version))
        view = None if cache is None else cache.get(key)
        if view is None:
            view = _version_view(registry, version, latest, public_key)
            if cache is not None:
                cache[key] = view
        out.append(replace(view, latest=version == latest))
    return out


def read_serving(url: str, timeout_s: float = 2.0) -> tuple[dict[str, Any] | None, str | None]:
    """The scoring service's rollout and recent alerts, or why they are not available."""
    try:
        rollout = httpx.get(url.rstrip("/") + "/v1/rollout", timeout=timeout_s)
        alerts = httpx.get(url.rstrip("/") + "/v1/alerts", timeout=timeout_s)
        rollout.raise_for_status()
        alerts.raise_for_status()
    except httpx.HTTPError as exc:
        return None, f"scoring service at {url} not reachable ({type(exc).__name__})"
    return {**rollout.json(), "alerts": alerts.json()["alerts"]}, None


def read_runs(runs_dir: Path | None, expected_partners: int | None = None) -> list[RunView]:
    """Every run folder with a round log, most recently active first."""
    if runs_dir is None or not runs_dir.is_dir():
        return []
    folders = sorted(
        (p for p in runs_dir.iterdir() if (p / ROUND_LOG).exists()),
        key=lambda p: (p / ROUND_LOG).stat().st_mtime,
        reverse=True,
    )
    return [read_run(p, expected_partners) for p in folders]


def gather(
    *,
    runs_dir: Path | None,
    registry: Path | None,
    public_key: Ed25519PublicKey | None,
    scoring_url: str | None,
    expected_partners: int | None = None,
    version_cache: VersionCache | None = None,
) -> Overview:
    runs = read_runs(runs_dir, expected_partners)
    versions = (
        read_versions(registry, public_key, version_cache)
        if registry is not None and public_key is not None
        else []
    )
    serving, error = read_serving(scoring_url) if scoring_url else (None, None)
    alerts = [a for run in runs for a in run.alerts]
    if serving is not None:
        alerts += serving["alerts"]
    return Overview(runs, versions, serving, error, alerts)


__all__ = [
    "EpsilonPoint",
    "Overview",
    "RoundRow",
    "RunView",
    "VersionView",
    "gather",
    "read_run",
    "read_runs",
    "read_serving",
    "read_versions",
]
