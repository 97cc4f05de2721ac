"""Aggregation: Flower's strategies chosen by name, wrapped to account for contributors."""

from server.strategies.accountable import AccountableStrategy
from server.strategies.metrics import aggregate_partner_metrics
from server.strategies.registry import (
    StrategyConfig,
    available_strategies,
    build_strategy,
    register_strategy,
)

__all__ = [
    "AccountableStrategy",
    "StrategyConfig",
    "aggregate_partner_metrics",
    "available_strategies",
    "build_strategy",
    "register_strategy",
]
