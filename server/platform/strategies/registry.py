"""Choose an aggregation algorithm by name: Flower's strategies, each with its options.

Each strategy declares a frozen config (the common options plus its own) and
registers it beside its builder. Robust aggregation (median, trimmed mean, Krum)
guards against a partner sending a wild update; FedProx and FedAdam help on
non-IID partners.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    Strategy,
)

from fedctr.plugins import Registry, option_names, typed_config
from fedctr.privacy.wire import AGGREGATION_WEIGHT
from fedctr.server.platform.errors import PlatformConfigError
from fedctr.server.platform.strategies.metrics import aggregate_partner_metrics
from fedctr.validate import Checker

DEFAULT_STRATEGY = "fedavg"


_CHECK = Checker(PlatformConfigError)


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """The options every strategy takes; a subclass sets ``name`` and adds its own.

    ``proximal_mu`` is the proximal term partners add to their local loss. The
    platform sends it every round whatever the aggregation, so it is common.
    """

    name: ClassVar[str]
    min_partners: int = 2
    fraction_train: float = 1.0
    proximal_mu: float = 0.0

    def __post_init__(self) -> None:
        if _CHECK.number(self.min_partners, "min_partners") < 1:
            _CHECK.fail(f"min_partners must be at least 1, got {self.min_partners}")
        _CHECK.rate(self.fraction_train, "fraction_train")
        _CHECK.non_negative(self.proximal_mu, "proximal_mu")

    def options(self) -> dict[str, Any]:
        """Every option by name: a ``[federation]`` table's strategy keys."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class FedAvgConfig(StrategyConfig):
    """Weighted mean of the updates."""

    name: ClassVar[str] = "fedavg"


@dataclass(frozen=True, kw_only=True)
class FedProxConfig(StrategyConfig):
    """FedAvg with partners' proximal term (the common ``proximal_mu``)."""

    name: ClassVar[str] = "fedprox"


@dataclass(frozen=True, kw_only=True)
class FedAdamConfig(StrategyConfig):
    """Adam on the server over the mean update; ``server_learning_rate`` is its eta."""

    name: ClassVar[str] = "fedadam"
    server_learning_rate: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        _CHECK.non_negative(self.server_learning_rate, "server_learning_rate")


@dataclass(frozen=True, kw_only=True)
class FedMedianConfig(StrategyConfig):
    """Coordinate-wise median: robust to a minority of wild updates."""

    name: ClassVar[str] = "fedmedian"


@dataclass(frozen=True, kw_only=True)
class FedTrimmedAvgConfig(StrategyConfig):
    """Mean after dropping the ``trimmed_beta`` share at each end, per coordinate."""

    name: ClassVar[str] = "fedtrimmedavg"
    trimmed_beta: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= _CHECK.number(self.trimmed_beta, "trimmed_beta") < 0.5:
            _CHECK.fail(f"trimmed_beta must be in [0, 0.5), got {self.trimmed_beta}")


@dataclass(frozen=True, kw_only=True)
class KrumConfig(StrategyConfig):
    """The update closest to its neighbours, tolerating ``byzantine_partners`` bad ones."""

    name: ClassVar[str] = "krum"
    byzantine_partners: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _CHECK.integer(self.byzantine_partners, "byzantine_partners")


C = TypeVar("C", bound=StrategyConfig)


@dataclass(frozen=True)
class StrategyPlugin(Generic[C]):
    """A registered strategy: its config type and the builder of the Flower strategy."""

    config_type: type[C]
    build: Callable[[C], Strategy]


STRATEGIES: Registry[StrategyPlugin[Any]] = Registry("strategy", error=PlatformConfigError)

# Keys the flat v1 config accepted for every strategy though one strategy used each;
# platform.toml files written then list them, so they are checked and ignored.
_V1_KEYS: Mapping[str, type[StrategyConfig]] = MappingProxyType(
    {
        "server_learning_rate": FedAdamConfig,
        "trimmed_beta": FedTrimmedAvgConfig,
        "byzantine_partners": KrumConfig,
    }
)


def register_strategy(
    config_type: type[C],
) -> Callable[[Callable[[C], Strategy]], Callable[[C], Strategy]]:
    """Decorator: ``fn`` builds the strategy named ``config_type.name`` from that config."""

    def wrap(fn: Callable[[C], Strategy]) -> Callable[[C], Strategy]:
        STRATEGIES.add(config_type.name, StrategyPlugin(config_type, fn))
        return fn

    return wrap


def available_strategies() -> tuple[str, ...]:
    return STRATEGIES.names()


def strategy_config(name: str = DEFAULT_STRATEGY, /, **options: Any) -> StrategyConfig:
    """The config of strategy ``name``: ``options`` set, the rest at their defaults; an
    option it does not take is a :class:`PlatformConfigError` naming it."""
    config_type = STRATEGIES.get(name).config_type
    return typed_config(config_type, options, owner=f"strategy '{name}'", error=PlatformConfigError)


def strategy_from_table(name: str, options: Mapping[str, Any]) -> StrategyConfig:
    """The config of strategy ``name`` from a ``[federation]`` table's options.

    A v1 key another strategy uses is checked by that strategy's config, then
    dropped: it never changed this strategy.
    """
    taken = option_names(STRATEGIES.get(name).config_type)
    own = dict(options)
    for key in sorted(set(own) & set(_V1_KEYS) - taken):
        _V1_KEYS[key](**{key: own.pop(key)})
    return strategy_config(name, **own)


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


@register_strategy(FedAvgConfig)
def _fedavg(cfg: FedAvgConfig) -> Strategy:
    return FedAvg(**_common(cfg))


@register_strategy(FedProxConfig)
def _fedprox(cfg: FedProxConfig) -> Strategy:
    return FedProx(**_common(cfg), proximal_mu=cfg.proximal_mu)


@register_strategy(FedAdamConfig)
def _fedadam(cfg: FedAdamConfig) -> Strategy:
    return FedAdam(**_common(cfg), eta=cfg.server_learning_rate)


@register_strategy(FedMedianConfig)
def _fedmedian(cfg: FedMedianConfig) -> Strategy:
    return FedMedian(**_common(cfg))


@register_strategy(FedTrimmedAvgConfig)
def _fedtrimmedavg(cfg: FedTrimmedAvgConfig) -> Strategy:
    return FedTrimmedAvg(**_common(cfg), beta=cfg.trimmed_beta)


@register_strategy(KrumConfig)
def _krum(cfg: KrumConfig) -> Strategy:
    return Krum(**_common(cfg), num_malicious_nodes=cfg.byzantine_partners)


def build_strategy(cfg: StrategyConfig) -> Strategy:
    """A fresh Flower strategy for ``cfg`` (metrics: declared weights summed, epsilon max)."""
    plugin = STRATEGIES.get(cfg.name)
    if not isinstance(cfg, plugin.config_type):
        raise PlatformConfigError(
            f"strategy '{cfg.name}' is built from a {plugin.config_type.__name__}, "
            f"not a {type(cfg).__name__}"
        )
    return plugin.build(cfg)


__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "FedAdamConfig",
    "FedAvgConfig",
    "FedMedianConfig",
    "FedProxConfig",
    "FedTrimmedAvgConfig",
    "KrumConfig",
    "StrategyConfig",
    "StrategyPlugin",
    "available_strategies",
    "build_strategy",
    "register_strategy",
    "strategy_config",
    "strategy_from_table",
]
