"""A wrapper around any Flower strategy that knows who contributed what, and fails closed.

It holds the inner strategy and delegates (like Flower's DP wrappers), adding what
the platform needs to publish an honest model card. Every reply is parsed through
the wire contract (:mod:`fedctr.privacy.wire`): an error reply becomes a
:class:`~fedctr.server.platform.rounds.Failure` holding only its code, reason class and column; a
training reply must carry exactly the declared records and keys, finite weights
that hash to the declared update hash, and (through ``check_reply``) a ledger
entry signed by a registered partner key. Anything else is rejected with a code,
logged, and never aggregated. A round aggregates only if at least
``min_partners`` partners contributed. With ``fold`` (FedAvg, FedProx, FedAdam) each
accepted reply is added to a running weighted sum as it is checked and let go, so the
platform holds O(model), not O(partners x model)
(:mod:`~fedctr.server.platform.strategies.running_mean`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedctr.models import state_dict_sha256
from fedctr.privacy import wire as P
from fedctr.privacy.wire import ContractViolation, ErrorCode, ErrorReply, TrainReply
from fedctr.server.platform.rounds import Failure, PartnerTrainRecord, RoundLog
from fedctr.server.platform.strategies.running_mean import RunningMean

logger = logging.getLogger(__name__)

ReplyCheck = Callable[[int, TrainReply], str | None]
"""(server round, parsed reply) -> why the reply must be dropped, or None."""


def failure_of(msg: Message) -> Failure:
    """An error reply as the contract allows the platform to see it."""
    node = msg.metadata.src_node_id
    code = msg.error.code
    if isinstance(code, int) and 0 <= code < min(ErrorCode):
        # Flower's own codes (node gone, timeout, a ClientApp that raised): the code is
        # kept, the reason never (a raised exception's text could carry partner data).
        return Failure(node, "node-error", f"flower-error-{code}")
    try:
        error = ErrorReply.parse(code, msg.error.reason)
    except ContractViolation:
        return Failure(node, "contract-violation", "undeclared-error")
    return Failure(node, error.code.kind, error.problem.value, error.column, error.file)


def parse_train_reply(msg: Message) -> TrainReply:
    """The declared report of a training reply; raises ContractViolation otherwise."""
    content = msg.content
    arrays = content.array_records
    if set(arrays) != {P.ARRAYS}:
        raise ContractViolation(f"train reply must carry exactly one '{P.ARRAYS}' record")
    records = {**content.metric_records, **content.config_records}
    if len(records) != len(content.metric_records) + len(content.config_records):
        raise ContractViolation("train reply reuses a record name")
    return TrainReply.from_records({k: dict(v) for k, v in records.items()})


def _weights_problem(msg: Message, update_hash: str) -> str | None:
    """Non-finite weights, or weights that are not the ones the partner declared."""
    state = {name: a.numpy() for name, a in msg.content[P.ARRAYS].items()}
    if not all(np.isfinite(v).all() for v in state.values()):
        return "update has non-finite weights"
    if update_hash != state_dict_sha256(state):
        return "update does not match the update-hash the partner reported"
    return None


class AccountableStrategy(Strategy):
    """Delegate to ``strategy``; parse, validate, record and gate on contributors.

    ``require_dp=False`` admits non-private baseline replies (benchmarks on public
    data only); the platform's ServerApp never sets it.
    """

    def __init__(
        self,
        strategy: Strategy,
        round_log: RoundLog,
        *,
        min_partners: int,
        check_reply: ReplyCheck | None = None,
        require_dp: bool = True,
        fold: bool = False,
    ) -> None:
        self.strategy = strategy
        self.round_log = round_log
        self.min_partners = min_partners
        self.check_reply = check_reply
        self.require_dp = require_dp
        self.fold = fold
        self._global: ArrayRecord | None = None

    def summary(self) -> None:
        logger.info("AccountableStrategy(min_partners=%d) wrapping:", self.min_partners)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._global = arrays  # the layout a folded reply must have
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def check(
        self, server_round: int, msg: Message
    ) -> tuple[PartnerTrainRecord | None, Failure | None]:
        """(record, None) to aggregate; (record or None, failure) to reject.

        Also what a resuming run passes each journaled reply through again."""
        node = msg.metadata.src_node_id
        if not self.require_dp and not msg.content.config_records:
            return PartnerTrainRecord(f"node-{node}", node, None, None, None), None
        try:
            reply = parse_train_reply(msg)
        except ContractViolation as exc:
            return None, Failure(node, "contract-violation", str(exc)[:200])
        record = PartnerTrainRecord(reply.partner_id, node, reply.epsilon, reply.delta, reply)
        problem = _weights_problem(msg, reply.update_hash)
        if problem is None and self.check_reply is not None:
            problem = self.check_reply(server_round, reply)
        if problem is not None:
            return record, Failure(node, "invalid-update", problem)
        return record, None

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        record = self.round_log.round(server_round)
        accepted: list[Message] = []
        mean = RunningMean(self._global) if self.fold and self._global is not None else None
        updates: dict[str, str] = {}  # partner -> the update hash counted for it
        for msg in replies:
            if msg.has_error():
                train, failure = None, failure_of(msg)
            else:
                train, failure = self.check(server_round, msg)
            if failure is None and train is not None and train.reply is not None:
                counted = updates.get(train.partner_id)
                if counted == train.reply.update_hash:
                    continue  # the same release again (a journaled reply re-sent): once
                if counted is not None:
                    failure = Failure(
                        train.node_id, "invalid-update", "second update from a partner in one round"
                    )
                else:
                    failure = self._unfoldable(mean, msg)
                if failure is None:
                    updates[train.partner_id] = train.reply.update_hash
            if failure is not None:
                record.failures.append(failure)
                if train is not None:
                    record.rejected.append(train)  # its release is ledgered, not accepted
                logger.warning(
                    "round %d: node %d did not contribute (%s): %s%s",
                    server_round,
                    failure.node_id,
                    failure.kind,
                    failure.problem,
                    f", column '{failure.column}'" if failure.column else "",
                )
                continue
            if train is not None:
                record.train.append(train)
                if mean is not None and train.reply is not None:
                    mean.add(msg)  # and the reply's arrays are let go
                else:
                    accepted.append(msg)
        count = len(accepted) + (0 if mean is None else mean.count)
        if count < self.min_partners:
            logger.error(
                "round %d: only %d partner(s) contributed, fewer than min_partners=%d; "
                "the global model is not updated this round",
                server_round,
                count,
                self.min_partners,
            )
            return None, None
        if mean is not None and mean.count:
            accepted = [mean.reply(), *accepted]
        arrays, metrics = self.strategy.aggregate_train(server_round, accepted)
        record.aggregated = arrays is not None
        return arrays, metrics

    @staticmethod
    def _unfoldable(mean: RunningMean | None, msg: Message) -> Failure | None:
        problem = None if mean is None else mean.problem(msg)
        if problem is None:
            return None
        return Failure(msg.metadata.src_node_id, "invalid-update", problem)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """None: partner-side evaluation is off; the platform evaluates on its own data."""
        return []

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return None


__all__ = ["AccountableStrategy", "failure_of", "parse_train_reply"]
