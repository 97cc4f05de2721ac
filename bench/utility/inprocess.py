"""Federated rounds in one process, with the platform's and the partners' own code.

What is the same as the Flower app (``federation.server_app`` / ``client_app``):
- server: the strategy from ``server.strategies.registry.build_strategy`` (Flower's
  FedAvg/FedAdam, aggregation weighted by ``num-examples``) inside the platform's
  ``AccountableStrategy``, driven by Flower's own ``Strategy.start`` round loop, with
  the same ``ConfigRecord`` keys and the initial model ``run_federation`` builds;
- partners: ``clients.node.PartnerNode.train``, i.e. noise calibrated by
  ``plan_release`` from the partner's budget over its planned rounds, the budget
  check, the configured DP-SGD implementation and the accountant record.

What differs, for speed: an in-process :class:`InProcessGrid` replaces the SuperLink /
Ray (messages are handed over, not serialized over the network); a partner keeps its
encoded rows in memory instead of re-reading its file for every message; no
checkpoints, ledgers or partner-side evaluation; noise and sampling are seeded.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from clients.data import EncodedData
from clients.node import PartnerNode
from clients.release_log import ReleaseLog
from fedctr.errors import FedctrError
from federation import protocol as P
from models import CTRModel, FeatureSpec, ModelConfig, build_model
from privacy import BudgetExceededError
from server.rounds import RoundLog
from server.strategies.accountable import AccountableStrategy
from server.strategies.registry import StrategyConfig, build_strategy

logger = logging.getLogger(__name__)


class InMemoryPartner(PartnerNode):
    """A partner node whose rows are already encoded (all of them train; no holdout)."""

    def __init__(self, config: PartnerConfig, rows: EncodedData) -> None:
        super().__init__(
            config,
            release_log=ReleaseLog(path=None, signing_key=None, owner=config.partner_id),
        )
        empty = rows.take(rows.y[:0].astype(int))
        self._rows = (rows, empty)

    def splits(self) -> tuple[EncodedData, EncodedData]:
        return self._rows


def handle_train(node: PartnerNode, msg: Message, *, seed: int) -> Message:
    """What ``federation.client_app.train`` does with a training message."""
    try:
        config = msg.content[P.CONFIG]
        weights, report = node.train(
            msg.content[P.ARRAYS].to_torch_state_dict(),
            model_config=ModelConfig.from_dict(json.loads(str(config[P.MODEL_CONFIG]))),
            spec_hash=str(config[P.SPEC_HASH]),
            run_id=str(config[P.RUN_ID]),
            server_round=int(config[P.SERVER_ROUND]),
            proximal_mu=float(config.get(P.PROXIMAL_MU, 0.0)),
            seed=seed,
        )
    except FedctrError as exc:
        code = P.ERROR_BUDGET_REFUSED if isinstance(exc, BudgetExceededError) else P.ERROR_PARTNER
        return Message(Error(code=code, reason=str(exc)), reply_to=msg)
    metrics = MetricRecord(
        {
            P.NUM_EXAMPLES: report.num_examples,
            P.TRAIN_LOSS: report.train_loss,
            P.EPSILON: report.epsilon if math.isfinite(report.epsilon) else math.inf,
            P.DELTA: report.delta,
        }
    )
    details = ConfigRecord(
        {
            P.PARTNER_ID: report.partner_id,
            "update-hash": report.update_hash,
            "noise-multiplier": report.release.noise_multiplier if report.release else 0.0,
            "sample-rate": report.release.sample_rate if report.release else 0.0,
            "steps": report.release.steps if report.release else 0,
        }
    )
    content = RecordDict({P.ARRAYS: ArrayRecord(weights), P.METRICS: metrics, P.REPORT: details})
    return Message(content=content, reply_to=msg)


class InProcessGrid(Grid):
    """A Grid whose nodes are partner objects in this process; replies are immediate."""

    def __init__(self, partners: dict[int, PartnerNode], *, seed: int) -> None:
        self.partners = partners
        self.seed = seed
        self._replies: dict[str, Message] = {}
        self._run = None

    def set_run(self, run) -> None:
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.partners)

    def _reply(self, msg: Message) -> Message:
        node_id = msg.metadata.dst_node_id
        if msg.metadata.message_type != MessageType.TRAIN:
            raise NotImplementedError("the benchmark runs training rounds only")
        server_round = int(msg.content[P.CONFIG][P.SERVER_ROUND])
        seed = (self.seed * 1_000_003 + node_id * 1_009 + server_round) % (2**63)
        return handle_train(self.partners[node_id], msg, seed=seed)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            key = str(len(self._replies))
            self._replies[key] = self._reply(msg)
            ids.append(key)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return [self._reply(msg) for msg in messages]


@dataclass(frozen=True)
class FederatedResult:
    model: CTRModel
    epsilon: float  # the worst partner's spent epsilon (inf without DP)
    delta: float
    noise_multiplier: float  # the largest partner's sigma (0 without DP)
    refusals: int


def run_federated(
    *,
    spec: FeatureSpec,
    spec_path: Path,
    model_config: ModelConfig,
    partners: list[EncodedData],
    privacy: PrivacySettings,
    trainings: Sequence[TrainingSettings],
    strategy: StrategyConfig,
    rounds: int,
    seed: int,
) -> FederatedResult:
    """Train ``rounds`` rounds; partner ``k`` holds ``partners[k]`` and ``trainings[k]``, and
    each its own budget ``privacy``."""
    if len(trainings) != len(partners):
        raise ValueError("one TrainingSettings per partner")
    with tempfile.TemporaryDirectory(prefix="fedctr-bench-") as tmp:
        nodes: dict[int, PartnerNode] = {}
        for k, (rows, training) in enumerate(zip(partners, trainings, strict=True)):
            config = PartnerConfig(
                partner_id=f"partner-{k + 1}",
                data=Path(tmp) / f"partner-{k + 1}.unused",
                spec=spec_path,
                state_dir=Path(tmp) / f"state-{k + 1}",
                privacy=privacy,
                training=training,
            )
            nodes[k + 1] = InMemoryPartner(config, rows)
        grid = InProcessGrid(nodes, seed=seed)
        # The identity a ServerApp process gets from its runtime (as flwr.server.compat does).
        TaskIdentity.task_id, TaskIdentity.run_id = 1, seed + 1
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        torch.manual_seed(seed)  # as server.orchestrator.initial_model
        model = build_model(spec, model_config)
        round_log = RoundLog(None)
        wrapped = AccountableStrategy(
            build_strategy(strategy), round_log, min_partners=strategy.min_partners
        )
        config = ConfigRecord(
            {
                P.RUN_ID: f"bench-{seed}",
                P.SPEC_HASH: spec.spec_hash,
                P.MODEL_CONFIG: json.dumps(model_config.to_dict()),
                P.PROXIMAL_MU: float(strategy.proximal_mu),
            }
        )
        result = wrapped.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=rounds,
            timeout=None,
            train_config=config,
            evaluate_config=ConfigRecord(dict(config)),
        )
        if result.arrays is not None and len(result.arrays) > 0:
            model.load_state_dict(result.arrays.to_torch_state_dict(), strict=True)
    records = [t for r in round_log.rounds.values() for t in r.train]
    eps = [t.epsilon for t in records if t.epsilon is not None]
    sigmas = [float(t.report.get("noise-multiplier", 0.0)) for t in records]
    refusals = sum(len(r.failures) for r in round_log.rounds.values())
    return FederatedResult(
        model=model,
        epsilon=max(eps) if eps else math.inf,
        delta=privacy.delta if privacy.enabled else 0.0,
        noise_multiplier=max(sigmas, default=0.0),
        refusals=refusals,
    )


__all__ = [
    "FederatedResult",
    "InMemoryPartner",
    "InProcessGrid",
    "handle_train",
    "run_federated",
]
