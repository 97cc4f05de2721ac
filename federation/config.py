"""The platform's run configuration: a TOML file validated into frozen dataclasses.

Example ``platform.toml`` (paths relative to the file)::

    [platform]
    run_name = "demo"
    spec = "spec.toml"
    work_dir = "runs"
    registry = "registry"
    signing_key = "keys/platform.key"
    ledger = "ledgers/platform.jsonl"
    partner_keys = "partner-keys"     # <partner_id>.pub: ledger keys of registered partners
    eval_data = "data/platform-test.parquet"   # optional, platform-held test data

    [federation]
    rounds = 5
    strategy = "fedavg"        # fedprox, fedadam, fedmedian, fedtrimmedavg, krum
    min_partners = 2
    timeout_s = 600

    [model]
    name = "deepfm"
    embed_dim = 8
    hidden = [64, 32]

    [secure_aggregation]           # optional: SecAgg+, the platform sees only sums
    threshold = 0.5                # share of a neighbourhood needed to unmask (a majority at least)
    neighbours = 0                 # 0: everyone masks with everyone; k (even): a ring of k

    [release_gate]                 # optional: publish only after a passing empirical audit
    canaries = 1000                # per declared configuration, one training run each
    # data = "data/gate.parquet"   # a file the platform holds; default: eval_data
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedctr.federation.release_gate import ReleaseGateSettings, release_gate_settings
from fedctr.models import FeatureSpec, ModelConfig, UnknownModelError, load_spec
from fedctr.privacy.secagg import SecAggError, SecAggSettings
from fedctr.server.platform.errors import PlatformConfigError
from fedctr.server.platform.orchestrator import FederationPlan
from fedctr.server.platform.strategies.registry import (
    DEFAULT_STRATEGY,
    StrategyConfig,
    strategy_from_table,
)
from fedctr.validate import Checker

PLATFORM_CONFIG_KEY = "platform-config"
PLATFORM_CONFIG_ENV = "FEDCTR_PLATFORM_CONFIG"


@dataclass(frozen=True, kw_only=True)
class PlatformConfig:
    """The platform's settings; build with :func:`load_platform_config`."""

    source: Path
    run_name: str
    spec_path: Path
    work_dir: Path
    registry: Path
    signing_key: Path
    ledger: Path
    partner_keys: Path
    eval_data: Path | None
    rounds: int
    timeout_s: float
    strategy: StrategyConfig
    model: ModelConfig
    seed: int = 0
    release_gate: ReleaseGateSettings | None = None
    secure_aggregation: SecAggSettings | None = None

    def __post_init__(self) -> None:
        Checker(PlatformConfigError, str(self.source)).integer(
            self.rounds, "[federation] rounds", minimum=1
        )

    def spec(self) -> FeatureSpec:
        return load_spec(self.spec_path)

    def plan(self, *, run_id: str | None = None) -> FederationPlan:
        run_id = run_id or f"{self.run_name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        return FederationPlan(
            run_id=run_id,
            rounds=self.rounds,
            spec=self.spec(),
            model=self.model,
            strategy=self.strategy,
            work_dir=self.work_dir / run_id,
            eval_data=self.eval_data,
            timeout_s=self.timeout_s,
            seed=self.seed,
            secure_aggregation=self.secure_aggregation,
        )


def _table(raw: dict[str, Any], name: str, source: Path) -> dict[str, Any]:
    return Checker(PlatformConfigError, str(source)).table(raw, name)


def load_platform_config(path: str | Path) -> PlatformConfig:
    """Parse and validate ``platform.toml``; errors name the file and key."""
    source = Path(path).resolve()
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlatformConfigError(f"cannot read platform config {source}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PlatformConfigError(f"{source}: not valid TOML: {exc}") from exc
    # [superlink] (address, TLS files) belongs to fedctr.federation.deployment, which reads it.
    sections = {
        "platform",
        "federation",
        "model",
        "superlink",
        "release_gate",
        "secure_aggregation",
    }
    unknown = sorted(set(raw) - sections)
    if unknown:
        raise PlatformConfigError(f"{source}: unknown sections {unknown}")
    platform = _table(raw, "platform", source)
    federation = _table(raw, "federation", source)
    base = source.parent

    def path_of(key: str, default: str | None = None) -> Path:
        value = platform.get(key, default)
        if value is None:
            raise PlatformConfigError(f"{source}: [platform] needs '{key}'")
        return (base / value).resolve()

    known_platform = {
        "run_name",
        "spec",
        "work_dir",
        "registry",
        "signing_key",
        "ledger",
        "partner_keys",
        "eval_data",
        "seed",
    }
    if sorted(set(platform) - known_platform):
        raise PlatformConfigError(
            f"{source}: unknown keys in [platform]: {sorted(set(platform) - known_platform)}"
        )
    # Besides rounds and timing, [federation] holds the strategy's typed options.
    options = {k: v for k, v in federation.items() if k not in {"rounds", "timeout_s", "strategy"}}
    try:
        strategy = strategy_from_table(federation.get("strategy", DEFAULT_STRATEGY), options)
    except (PlatformConfigError, TypeError) as exc:
        raise PlatformConfigError(f"{source}: [federation] {exc}") from exc
    try:
        model = ModelConfig.from_dict(_table(raw, "model", source))
    except (UnknownModelError, ValueError, TypeError) as exc:
        raise PlatformConfigError(f"{source}: [model] {exc}") from exc
    eval_data = platform.get("eval_data")
    eval_path = (base / eval_data).resolve() if eval_data else None
    gate = release_gate_settings(
        raw, base=base, default_data=eval_path, check=Checker(PlatformConfigError, str(source))
    )
    secagg = None
    if "secure_aggregation" in raw:
        try:
            secagg = SecAggSettings(**_table(raw, "secure_aggregation", source))
        except (SecAggError, TypeError) as exc:
            raise PlatformConfigError(f"{source}: [secure_aggregation] {exc}") from exc
    return PlatformConfig(
        source=source,
        run_name=str(platform.get("run_name", "fedctr")),
        spec_path=path_of("spec"),
        work_dir=path_of("work_dir", "runs"),
        registry=path_of("registry", "registry"),
        signing_key=path_of("signing_key", "keys/platform.key"),
        ledger=path_of("ledger", "ledgers/platform.jsonl"),
        partner_keys=path_of("partner_keys", "partner-keys"),
        eval_data=eval_path,
        rounds=federation.get("rounds", 3),
        timeout_s=float(federation.get("timeout_s", 600)),
        strategy=strategy,
        model=model,
        seed=int(platform.get("seed", 0)),
        release_gate=gate,
        secure_aggregation=secagg,
    )


def resolve_platform_config(run_config: dict[str, Any]) -> PlatformConfig:
    """Find the platform config: Flower run config key, else the environment.

    ``flwr run`` passes it as run config; the in-process simulation launcher sets
    the environment variable, since Flower's simulation gives the ServerApp an
    empty run config.
    """
    path = str(run_config.get(PLATFORM_CONFIG_KEY, "") or os.environ.get(PLATFORM_CONFIG_ENV, ""))
    if not path:
        raise PlatformConfigError(
            "no platform config: pass --run-config "
            f"'{PLATFORM_CONFIG_KEY}=\"/path/platform.toml\"' or set {PLATFORM_CONFIG_ENV}"
        )
    return load_platform_config(path)


__all__ = [
    "PLATFORM_CONFIG_ENV",
    "PLATFORM_CONFIG_KEY",
    "PlatformConfig",
    "load_platform_config",
    "resolve_platform_config",
]
