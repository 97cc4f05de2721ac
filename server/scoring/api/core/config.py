"""Scoring-service settings, from ``FEDCTR_SERVE_*`` environment variables.

Read through the cached :func:`get_settings` dependency, never a module-level
object, so tests override them (``app.dependency_overrides``) and uvicorn workers
(separate processes) each build their own from the environment ``fedctr serve``
exported.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "FEDCTR_SERVE_"


class Settings(BaseSettings):
    """Everything the scoring service needs; no secrets (only the platform's public key)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    registry: Path = Field(description="model registry directory (contains LATEST)")
    public_key: Path = Field(description="platform Ed25519 public key (PEM)")
    spec: str | None = Field(
        default=None,
        description="feature spec (file or built-in name) requests are hashed with; "
        "default: the spec of the model LATEST names at start-up",
    )
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    max_batch_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    inference: Literal["numpy", "torch"] = "numpy"
    fast_path: bool = Field(
        default=True, description="answer the scoring routes before FastAPI's routing"
    )
    context_cache_size: int = Field(default=100_000, ge=0)
    breaker_window: int = Field(default=2000, ge=1)
    breaker_min_samples: int = Field(default=200, ge=1)
    breaker_cooldown_s: float = Field(default=5.0, ge=0)
    # A/B and canary (server/scoring/rollout): a second verified version takes a share
    # of keyed traffic; the split key's hash decides, with this deployment's salt.
    canary: str | None = Field(
        default=None, description="registry version served as the canary arm (vNNNN-...)"
    )
    canary_share: float = Field(default=0.01, ge=0, le=1, description="initial canary share")
    split_key: Literal["impression_id", "user_id"] = "impression_id"
    split_salt: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="16-byte hex key of the split hash (every worker must share it); "
        "default: random per start",
    )
    rollout_state: Path | None = Field(
        default=None, description="shared rollout state file (fedctr serve creates it)"
    )
    impression_capacity: int = Field(default=1 << 20, ge=1, le=1 << 28)
    rollback_band_low: float = Field(default=0.8, gt=0, le=1)
    rollback_band_high: float = Field(default=1.25, ge=1)
    rollback_z: float = Field(default=3.0, gt=0)
    rollback_min_expected_clicks: float = Field(default=30.0, gt=0)
    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token for ramp and rollback; without one only loopback clients "
        "may change the rollout",
    )

    alert_interval_s: float = Field(
        default=10.0, gt=0, le=3600, description="seconds per alert window"
    )
    alert_webhook: str | None = Field(
        default=None, pattern=r"^https?://", description="URL alerts are POSTed to as JSON"
    )

    @model_validator(mode="after")
    def _salt_shared_by_workers(self) -> Settings:
        if self.rollout_state is not None and self.split_salt is None:
            raise ValueError("a shared rollout_state needs the split_salt every worker uses")
        return self

    @field_validator("public_key")
    @classmethod
    def _key_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"public key file {value} does not exist")
        return value


@lru_cache
def get_settings() -> Settings:
    """The process's settings (cached: read the environment once)."""
    return Settings()  # type: ignore[call-arg]  (required fields come from the environment)


__all__ = ["ENV_PREFIX", "Settings", "get_settings"]
