"""Aggregation: Flower's strategies chosen by name, wrapped to account for contributors."""

from fedctr.server.platform.strategies.accountable import AccountableStrategy
from fedctr.server.platform.strategies.metrics import aggregate_partner_metrics
from fedctr.server.platform.strategies.registry import (
    StrategyConfig,
    available_strategies,
    build_strategy,
    register_strategy,
    strategy_config,
)

__all__ = [
    "AccountableStrategy",
    "StrategyConfig",
    "aggregate_partner_metrics",
    "available_strategies",
    "build_strategy",
    "register_strategy",
    "strategy_config",
]
