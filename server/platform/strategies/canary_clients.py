"""Canary clients for a federation-level privacy estimate (audit runs only).

Andrew et al., ICLR 2024 (:mod:`fedctr.privacy.audit.one_shot`): ``k`` extra
clients, each owning a fixed random unit direction ``c_i``, join the aggregation;
when one takes part in a round its "update" is ``c_i`` scaled to a real partner's
update norm. After the run the final model delta's cosine with each ``c_i`` is
compared with that of directions never inserted.

The wrapper sits *inside* :class:`~.accountable.AccountableStrategy`,
around the Flower strategy: the accountable layer has already parsed, checked and
recorded the real replies when the canaries are added, so a canary never enters the
round log, the platform ledger or a model card. An audit run publishes nothing
(its ServerApp never calls the publish step); its model is the audit's, not a release.

Choices, and why:

- **Scale**: the median L2 norm of this round's real updates (``reply - global``).
  fedctr partners clip per record, not per update, so there is no client clip norm to
  scale to; the median is "a typical partner" and is not moved by one odd partner.
- **Weight**: the mean declared ``aggregation-weight`` of this round's real replies,
  so a canary counts as one more typical partner. With few partners, ``k`` canaries at
  participation 1 dilute the real update by ``W / (W + k w)``: the audit run's model
  is not the production model, which is fine for an estimate of what one client's
  update shows, and a reason never to publish it.
- **Participation**: each canary joins each round independently with probability
  ``participation`` (default 1); a canary that never joined is not "inserted".
- **Recorded**: the initial global model, the latest one, and every round's
  per-canary cosines with that round's model delta (inserted and unseen canaries,
  for the all-iterates estimate). Directions are regenerated from ``(seed, index)``,
  and per-round models are reduced to cosines as they pass, so memory is ``O(d)``
  rather than ``O(k d)`` or ``O(T d)``.

Fits FedAvg and the strategies that average the weighted updates before any server
step (FedProx, FedAvgM, FedAdam, FedAdagrad, FedYogi). It does not fit robust
aggregation (FedMedian, FedTrimmedAvg, Krum/MultiKrum, Bulyan), which may drop or
trim the canary by design, nor QFedAvg (loss-reweighted) or the XGBoost strategies:
those are refused rather than measured wrongly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedYogi,
    Strategy,
)

from fedctr.privacy.audit.one_shot import canary_direction, cosines
from fedctr.server.platform.errors import PlatformError
from fedctr.server.platform.strategies.wrapper import StrategyWrapper
from fedctr.validate import Checker

logger = logging.getLogger(__name__)

FITTING_STRATEGIES: tuple[type[FedAvg], ...] = (
    FedAvg,
    FedProx,
    FedAvgM,
    FedAdam,
    FedAdagrad,
    FedYogi,
)
"""Exact types the canaries fit: a weighted mean of the updates, then at most a server step."""


class CanaryAuditError(PlatformError, ValueError):
    """A canary audit that cannot be run or read as configured."""


_CHECK = Checker(CanaryAuditError)


@dataclass(frozen=True, kw_only=True)
class CanaryConfig:
    """``canaries`` inserted canary clients and ``unseen`` directions never inserted.

    ``unseen`` directions are the empirical null: the final-model estimate uses the
    analytic ``N(0, 1/d)`` and shows their fit only as a check; the all-iterates
    estimate needs them (its null is a maximum over rounds).
    """

    canaries: int = 50
    unseen: int = 50
    participation: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        # at least 2 of each: a Gaussian is fitted to both
        _CHECK.integer(self.canaries, "canaries", minimum=2)
        _CHECK.integer(self.unseen, "unseen", minimum=2)
        _CHECK.rate(self.participation, "participation")
        _CHECK.integer(self.seed, "seed")

    @property
    def inserted_indices(self) -> range:
        return range(self.canaries)

    @property
    def unseen_indices(self) -> range:
        return range(self.canaries, self.canaries + self.unseen)


@dataclass(frozen=True)
class CanaryRound:
    """One aggregated round as the canaries saw it.

    ``cosines`` holds ``cos(theta_t - theta_{t-1}, c_i)`` for the inserted canaries
    then the unseen ones (``CanaryConfig`` index order).
    """

    round: int
    participants: tuple[int, ...]
    scale: float
    weight: float
    real_replies: int
    cosines: tuple[float, ...]


@dataclass
class CanaryRecord:
    """What an audit run keeps for the estimator: flat models and per-round cosines."""

    config: CanaryConfig
    names: tuple[str, ...] = ()
    initial: np.ndarray | None = None
    latest: np.ndarray | None = None
    rounds: list[CanaryRound] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return 0 if self.initial is None else int(self.initial.size)

    def inserted(self) -> tuple[int, ...]:
        """Canaries that took part in at least one aggregated round."""
        return tuple(sorted({i for r in self.rounds for i in r.participants}))

    def final_cosines(self, indices: Iterable[int]) -> np.ndarray:
        """``cos(theta_T - theta_0, c_i)``: the paper's final-model statistic."""
        if self.initial is None or self.latest is None:
            raise CanaryAuditError("no round was aggregated: there is no model delta")
        return cosines(self.latest - self.initial, self.config.seed, list(indices))

    def max_round_cosines(self, indices: Iterable[int]) -> np.ndarray:
        """``max_t cos(theta_t - theta_{t-1}, c_i)``: the all-iterates statistic."""
        if not self.rounds:
            raise CanaryAuditError("no round was aggregated: there are no iterates")
        table = np.array([r.cosines for r in self.rounds])
        return table[:, list(indices)].max(axis=0)


def _float_names(arrays: ArrayRecord) -> tuple[str, ...]:
    return tuple(n for n, a in arrays.items() if np.issubdtype(a.numpy().dtype, np.floating))


def _flat(arrays: ArrayRecord, names: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([arrays[n].numpy().ravel().astype(np.float64) for n in names])


def _canary_metadata(template: Message, index: int) -> Metadata:
    """Reply metadata for a canary: no node sent it (source node 0, the server's side)."""
    meta = template.metadata
    return Metadata(
        run_id=meta.run_id,
        message_id=f"canary-{index}",
        src_node_id=0,
        dst_node_id=meta.dst_node_id,
        reply_to_message_id="",
        group_id=meta.group_id,
        created_at=meta.created_at,
        ttl=meta.ttl,
        message_type=MessageType.TRAIN,
    )


class CanaryClients(StrategyWrapper):
    """Delegate to ``strategy``, adding canary updates to every training aggregation.

    ``record`` collects what the estimator needs; pass one in to read it after the run.
    """

    def __init__(
        self, strategy: Strategy, config: CanaryConfig, record: CanaryRecord | None = None
    ) -> None:
        if type(strategy) not in FITTING_STRATEGIES:
            raise CanaryAuditError(
                f"canary clients do not fit {type(strategy).__name__}: it does not average "
                "the weighted updates (robust aggregation may drop the canary by design); "
                f"use one of {', '.join(t.__name__ for t in FITTING_STRATEGIES)}"
            )
        super().__init__(strategy)
        self.strategy: FedAvg = strategy
        self.config = config
        self.record = record if record is not None else CanaryRecord(config)
        self._global: ArrayRecord | None = None

    def summary(self) -> None:
        logger.info(
            "CanaryClients(canaries=%d, unseen=%d, participation=%g) wrapping:",
            self.config.canaries,
            self.config.unseen,
            self.config.participation,
        )
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global model the round starts from (the first is theta_0)."""
        self._global = arrays
        if self.record.initial is None:
            self.record.names = _float_names(arrays)
            self.record.initial = _flat(arrays, self.record.names)
            self.record.latest = self.record.initial
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def _participants(self, server_round: int) -> tuple[int, ...]:
        rng = np.random.default_rng([self.config.seed, 0xCA4A, server_round])
        draws = rng.random(self.config.canaries)
        return tuple(int(i) for i in np.flatnonzero(draws < self.config.participation))

    def _canary(self, index: int, base: ArrayRecord, scale: float, template: Message) -> RecordDict:
        """A reply as canary ``index`` would send it: ``global + scale * c_i``."""
        direction = canary_direction(self.config.seed, index, self.record.dim) * scale
        out: dict[str, Array] = {}
        offset = 0
        for name, array in base.items():
            value = array.numpy()
            if name in self.record.names:
                step = direction[offset : offset + value.size].reshape(value.shape)
                value = (value + step).astype(value.dtype)
                offset += value.size
            out[name] = Array(np.ascontiguousarray(value))
        content = template.content
        (arrays_name,) = content.array_records
        (metrics_name,) = content.metric_records
        return RecordDict(
            {arrays_name: ArrayRecord(out), metrics_name: MetricRecord(dict(content[metrics_name]))}
        )

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        real = [m for m in replies if not m.has_error()]
        if not real or self._global is None:
            return self.strategy.aggregate_train(server_round, real)
        base = self._global
        start = _flat(base, self.record.names)
        key = self.strategy.weighted_by_key
        weights = [float(next(iter(m.content.metric_records.values()))[key]) for m in real]
        updates = [
            _flat(next(iter(m.content.array_records.values())), self.record.names) for m in real
        ]
        norms = [float(np.linalg.norm(u - start)) for u in updates]
        scale = float(np.median(norms))
        weight = float(np.mean(weights))
        participants = self._participants(server_round)
        canaries = []
        for index in participants:
            content = self._canary(index, base, scale, real[0])
            next(iter(content.metric_records.values()))[key] = weight
            canaries.append(Message(content, metadata=_canary_metadata(real[0], index)))
        arrays, _ = self.strategy.aggregate_train(server_round, [*real, *canaries])
        # Metrics are the real partners' alone: a canary reports nothing.
        metrics = self.strategy.train_metrics_aggr_fn([m.content for m in real], key)
        if arrays is None:
            return None, metrics
        new = _flat(arrays, self.record.names)
        indices = [*self.config.inserted_indices, *self.config.unseen_indices]
        self.record.rounds.append(
            CanaryRound(
                round=server_round,
                participants=participants,
                scale=scale,
                weight=weight,
                real_replies=len(real),
                cosines=tuple(float(c) for c in cosines(new - start, self.config.seed, indices)),
            )
        )
        self.record.latest = new
        logger.info(
            "round %d: %d canaries at norm %.4g, weight %.4g beside %d partners",
            server_round,
            len(participants),
            scale,
            weight,
            len(real),
        )
        return arrays, metrics


__all__ = [
    "FITTING_STRATEGIES",
    "CanaryAuditError",
    "CanaryClients",
    "CanaryConfig",
    "CanaryRecord",
    "CanaryRound",
]
