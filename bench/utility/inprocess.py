"""Federated rounds in one process, with the platform's and the partners' own code.

What is the same as the Flower app (``fedctr.federation.server_app`` / ``client_app``):
- server: the strategy from ``fedctr.server.platform.strategies.registry.build_strategy`` (Flower's
  FedAvg/FedAdam, weighted by the partners' declared ``aggregation-weight``) inside the platform's
  ``AccountableStrategy``, driven by Flower's own ``Strategy.start`` round loop, with
  the same ``ConfigRecord`` keys and the initial model ``run_federation`` builds;
- partners: ``fedctr.federation.client_app.handle_message`` (the training handler and the
  secure-aggregation mod's answers) and
  ``fedctr.clients.node.PartnerNode.train``,
  i.e. the same reply builder, noise calibrated by
  ``plan_release`` from the partner's budget over its planned rounds, the budget
  check, the configured DP-SGD implementation and the accountant record.

What differs, for speed: an in-process :class:`InProcessGrid` replaces the SuperLink /
Ray (messages are handed over, not serialized over the network); a partner keeps its
encoded rows in memory instead of re-reading its file for every message; no
checkpoints or platform ledger; noise and sampling are seeded.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    RecordDict,
)
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.clients.node import PartnerNode
from fedctr.federation.client_app import handle_message
from fedctr.models import CTRModel, FeatureSpec, ModelConfig, build_model
from fedctr.models.logs.reader import EncodedData
from fedctr.privacy import wire as P
from fedctr.privacy.secagg import SecAggSettings
from fedctr.privacy.signing import generate_signing_key, save_private_key
from fedctr.server.platform.rounds import RoundLog
from fedctr.server.platform.strategies.accountable import AccountableStrategy
from fedctr.server.platform.strategies.registry import StrategyConfig, build_strategy
from fedctr.server.platform.strategies.secagg import SecAggPlus

logger = logging.getLogger(__name__)


class InMemoryPartner(PartnerNode):
    """A partner node whose rows are already encoded (all of them train; no holdout).

    Its ledger and signing key live in the run's temporary folder: DP releases are
    ledgered exactly as on a real node.
    """

    def __init__(self, config: PartnerConfig, rows: EncodedData) -> None:
        super().__init__(config)
        empty = rows.take(rows.y[:0].astype(int))
        self._rows = (rows, empty)

    def splits(self) -> tuple[EncodedData, EncodedData]:
        return self._rows


class InProcessGrid(Grid):
    """A Grid whose nodes are partner objects in this process; replies are immediate."""

    def __init__(self, partners: dict[int, PartnerNode], *, seed: int) -> None:
        self.partners = partners
        self.seed = seed
        self._replies: dict[str, Message] = {}
        self._states: dict[int, RecordDict] = {}  # each node's context state
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
        state = self._states.setdefault(node_id, RecordDict())
        if P.CONFIG not in msg.content.config_records:  # a secure-aggregation step
            return handle_message(lambda: self.partners[node_id], msg, state=state)
        server_round = int(msg.content[P.CONFIG][P.SERVER_ROUND])
        seed = (self.seed * 1_000_003 + node_id * 1_009 + server_round) % (2**63)
        return handle_message(lambda: self.partners[node_id], msg, state=state, seed=seed)

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
    on_round: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
    secure_aggregation: SecAggSettings | None = None,
) -> FederatedResult:
    """Train ``rounds`` rounds; partner ``k`` holds ``partners[k]`` and ``trainings[k]``, and
    each its own budget ``privacy``. ``on_round(round, global state)`` sees the global
    model after every round (early stopping on a validation split)."""
    if len(trainings) != len(partners):
        raise ValueError("one TrainingSettings per partner")
    with tempfile.TemporaryDirectory(prefix="fedctr-bench-") as tmp:
        nodes: dict[int, PartnerNode] = {}
        for k, (rows, training) in enumerate(zip(partners, trainings, strict=True)):
            key = save_private_key(generate_signing_key(), Path(tmp) / f"partner-{k + 1}.key")
            config = PartnerConfig(
                partner_id=f"partner-{k + 1}",
                data=Path(tmp) / f"partner-{k + 1}.unused",
                spec=spec_path,
                state_dir=Path(tmp) / f"state-{k + 1}",
                signing_key=key,
                ledger=Path(tmp) / f"ledger-{k + 1}.jsonl",
                privacy=privacy,
                training=training,
            )
            nodes[k + 1] = InMemoryPartner(config, rows)
        grid = InProcessGrid(nodes, seed=seed)
        # The identity a ServerApp process gets from its runtime (as flwr.server.compat does).
        TaskIdentity.task_id, TaskIdentity.run_id = 1, seed + 1
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        torch.manual_seed(seed)  # as fedctr.server.platform.orchestrator.initial_model
        model = build_model(spec, model_config)
        round_log = RoundLog(None)
        aggregation = build_strategy(strategy)
        secagg = None
        if secure_aggregation is not None:
            secagg = SecAggPlus(
                aggregation, secure_aggregation, round_log=round_log, timeout_s=3600.0
            )
        wrapped = AccountableStrategy(
            secagg or aggregation,
            round_log,
            min_partners=strategy.min_partners,
            require_dp=privacy.enabled,
            check_reply=None if secagg is None else secagg.reply_problem,
        )
        config = ConfigRecord(
            {
                P.RUN_ID: f"bench-{seed}",
                P.SPEC_HASH: spec.spec_hash,
                P.MODEL_CONFIG: json.dumps(model_config.to_dict()),
                P.PROXIMAL_MU: float(strategy.proximal_mu),
            }
        )

        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> None:
            if on_round is not None and server_round > 0:
                on_round(server_round, arrays.to_torch_state_dict())

        result = wrapped.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=rounds,
            timeout=None,
            train_config=config,
            evaluate_fn=evaluate_fn,
        )
        if result.arrays is not None and len(result.arrays) > 0:
            model.load_state_dict(result.arrays.to_torch_state_dict(), strict=True)
    records = [t for r in round_log.rounds.values() for t in r.train]
    eps = [t.epsilon for t in records if t.epsilon is not None]
    sigmas = [t.reply.release.noise_multiplier for t in records if t.reply is not None]
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
    "run_federated",
]
