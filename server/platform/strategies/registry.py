"""Choose an aggregation algorithm by name: Flower's strategies, configured alike.

One builder per algorithm, registered by decorator (duplicates rejected). Robust
aggregation (median, trimmed mean, Krum) guards against a partner sending a wild
update; FedProx and FedAdam help on non-IID partners.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedctr.privacy.wire import AGGREGATION_WEIGHT
from fedctr.server.platform.errors import PlatformConfigError
from fedctr.server.platform.strategies.metrics import aggregate_partner_metrics
from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    Strategy,
)


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """How the platform aggregates; validated on construction."""

    name: str = "fedavg"
    min_partners: int = 2
    fraction_train: float = 1.0
    proximal_mu: float = 0.0
    server_learning_rate: float = 0.01
    trimmed_beta: float = 0.2
    byzantine_partners: int = 0

    def __post_init__(self) -> None:
        if self.name not in _BUILDERS:
            raise PlatformConfigError(
                f"unknown strategy '{self.name}'; choose one of {available_strategies()}"
            )
        if isinstance(self.min_partners, bool) or self.min_partners < 1:
            raise PlatformConfigError("min_partners must be at least 1")
        value = self.fraction_train
        if isinstance(value, bool) or not (isinstance(value, int | float) and 0 < value <= 1):
            raise PlatformConfigError("fraction_train must be in (0, 1]")
        for attr in ("proximal_mu", "server_learning_rate"):
            value = getattr(self, attr)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise PlatformConfigError(f"{attr} must be a non-negative number")
        if not 0 <= self.trimmed_beta < 0.5:
            raise PlatformConfigError("trimmed_beta must be in [0, 0.5)")


_BUILDERS: dict[str, Callable[[StrategyConfig], Strategy]] = {}


def register_strategy(
    name: str,
) -> Callable[[Callable[[StrategyConfig], Strategy]], Callable[[StrategyConfig], Strategy]]:
    def wrap(fn: Callable[[StrategyConfig], Strategy]) -> Callable[[StrategyConfig], Strategy]:
        if name in _BUILDERS:
            raise ValueError(f"strategy '{name}' is already registered")
        _BUILDERS[name] = fn
        return fn

    return wrap


def available_strategies() -> tuple[str, ...]:
    return tuple(sorted(_BUILDERS))


def _common(cfg: StrategyConfig) -> dict[str, Any]:
    """Weights are the partners' declared ``aggregation-weight`` (never row counts), and
    no evaluate messages are sent: partner-side evaluation is off (fedctr.privacy.wire)."""
    return {
        "fraction_train": cfg.fraction_train,
        "fraction_evaluate": 0.0,
        "min_train_nodes": cfg.min_partners,
        "min_evaluate_nodes": 0,
        "min_available_nodes": cfg.min_partners,
        "weighted_by_key": AGGREGATION_WEIGHT,
        "train_metrics_aggr_fn": aggregate_partner_metrics,
        "evaluate_metrics_aggr_fn": aggregate_partner_metrics,
    }


@register_strategy("fedavg")
def _fedavg(cfg: StrategyConfig) -> Strategy:
    return FedAvg(**_common(cfg))


@register_strategy("fedprox")
def _fedprox(cfg: StrategyConfig) -> Strategy:
    return FedProx(**_common(cfg), proximal_mu=cfg.proximal_mu)


@register_strategy("fedadam")
def _fedadam(cfg: StrategyConfig) -> Strategy:
    return FedAdam(**_common(cfg), eta=cfg.server_learning_rate)


@register_strategy("fedmedian")
def _fedmedian(cfg: StrategyConfig) -> Strategy:
    return FedMedian(**_common(cfg))


@register_strategy("fedtrimmedavg")
def _fedtrimmedavg(cfg: StrategyConfig) -> Strategy:
    return FedTrimmedAvg(**_common(cfg), beta=cfg.trimmed_beta)


@register_strategy("krum")
def _krum(cfg: StrategyConfig) -> Strategy:
    return Krum(**_common(cfg), num_malicious_nodes=cfg.byzantine_partners)


def build_strategy(cfg: StrategyConfig) -> Strategy:
    """A fresh Flower strategy for ``cfg`` (metrics: declared weights summed, epsilon max)."""
    return _BUILDERS[cfg.name](cfg)


__all__ = ["StrategyConfig", "available_strategies", "build_strategy", "register_strategy"]
