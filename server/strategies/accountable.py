"""A wrapper around any Flower strategy that knows who contributed what.

It holds the inner strategy and delegates (like Flower's DP wrappers), adding what
the platform needs to publish an honest model card: refusals and failures are
logged and recorded, never fatal; updates that are malformed or non-finite are
dropped before aggregation; a round aggregates only if at least ``min_partners``
partners contributed; every accepted reply is recorded in the explicit
:class:`~server.rounds.RoundLog`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from federation import protocol as P
from models import state_dict_sha256
from server.rounds import Failure, PartnerEvalRecord, PartnerTrainRecord, RoundLog

logger = logging.getLogger(__name__)

ReplyCheck = Callable[[int, dict[str, object]], str | None]
"""(server round, partner report) -> why the reply must be dropped, or None."""


def _failure(msg: Message) -> Failure:
    code = msg.error.code
    kind = P.ERROR_NAMES.get(code, "node-error")
    reason = (msg.error.reason or "").strip().splitlines()
    return Failure(msg.metadata.src_node_id, kind, reason[-1] if reason else "no reason given")


def _report(msg: Message) -> dict[str, object]:
    record = msg.content.config_records.get(P.REPORT)
    return dict(record) if record is not None else {}


def _update_problem(msg: Message, report: dict[str, object]) -> str | None:
    """Why an update cannot be aggregated, or None if it can.

    The weights must be finite and hash to the ``update-hash`` the partner signed
    into its ledger entry, so what is aggregated is what was ledgered.
    """
    arrays = msg.content.array_records.get(P.ARRAYS)
    if arrays is None or msg.content.metric_records.get(P.METRICS) is None:
        return "reply lacks weights or metrics"
    if P.PARTNER_ID not in report:
        return "reply lacks the partner report"
    state = {name: a.numpy() for name, a in arrays.items()}
    if not all(np.isfinite(v).all() for v in state.values()):
        return "update has non-finite weights"
    claimed = report.get("update-hash")
    if claimed and claimed != state_dict_sha256(state):
        return "update does not match the update-hash the partner reported"
    return None


def _train_record(
    msg: Message, metrics: MetricRecord, report: dict[str, object]
) -> PartnerTrainRecord | None:
    try:
        epsilon = float(metrics[P.EPSILON])
        return PartnerTrainRecord(
            partner_id=str(report[P.PARTNER_ID]),
            node_id=msg.metadata.src_node_id,
            num_examples=int(metrics[P.NUM_EXAMPLES]),
            train_loss=float(metrics[P.TRAIN_LOSS]),
            epsilon=epsilon if math.isfinite(epsilon) else None,
            delta=float(metrics[P.DELTA]) if math.isfinite(epsilon) else None,
            report=report,
        )
    except (KeyError, TypeError, ValueError):
        return None


class AccountableStrategy(Strategy):
    """Delegate to ``strategy``; record, validate and gate on contributors."""

    def __init__(
        self,
        strategy: Strategy,
        round_log: RoundLog,
        *,
        min_partners: int,
        check_reply: ReplyCheck | None = None,
    ) -> None:
        self.strategy = strategy
        self.round_log = round_log
        self.min_partners = min_partners
        self.check_reply = check_reply

    def summary(self) -> None:
        logger.info("AccountableStrategy(min_partners=%d) wrapping:", self.min_partners)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        record = self.round_log.round(server_round)
        accepted: list[Message] = []
        for msg in replies:
            if msg.has_error():
                failure = _failure(msg)
                record.failures.append(failure)
                logger.warning(
                    "round %d: node %d did not contribute (%s): %s",
                    server_round,
                    failure.node_id,
                    failure.kind,
                    failure.reason,
                )
                continue
            report = _report(msg)
            metrics = msg.content.metric_records.get(P.METRICS)
            problem = _update_problem(msg, report)
            if problem is None and self.check_reply is not None:
                problem = self.check_reply(server_round, report)
            train = (
                None
                if metrics is None or P.PARTNER_ID not in report
                else _train_record(msg, metrics, report)
            )
            if problem is not None or train is None:
                failure = Failure(msg.metadata.src_node_id, "invalid-update", str(problem))
                record.failures.append(failure)
                if train is not None:
                    record.rejected.append(train)  # its release is ledgered, not accepted
                logger.warning(
                    "round %d: dropped node %d: %s", server_round, failure.node_id, failure.reason
                )
                continue
            record.train.append(train)
            accepted.append(msg)
        if len(accepted) < self.min_partners:
            logger.error(
                "round %d: only %d partner(s) contributed, fewer than min_partners=%d; "
                "the global model is not updated this round",
                server_round,
                len(accepted),
                self.min_partners,
            )
            return None, None
        arrays, metrics = self.strategy.aggregate_train(server_round, accepted)
        record.aggregated = arrays is not None
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        record = self.round_log.round(server_round)
        valid: list[Message] = []
        for msg in replies:
            if msg.has_error():
                failure = _failure(msg)
                logger.warning(
                    "round %d: evaluation failed on node %d (%s): %s",
                    server_round,
                    failure.node_id,
                    failure.kind,
                    failure.reason,
                )
                continue
            metrics = msg.content.metric_records.get(P.METRICS)
            report = _report(msg)
            if metrics is None:
                continue
            record.evaluate.append(
                PartnerEvalRecord(
                    partner_id=str(report.get(P.PARTNER_ID, msg.metadata.src_node_id)),
                    node_id=msg.metadata.src_node_id,
                    num_examples=int(metrics[P.NUM_EXAMPLES]),
                    auc=float(metrics[P.AUC]),
                    logloss=float(metrics[P.LOGLOSS]),
                )
            )
            valid.append(msg)
        if not valid:
            return None
        result = self.strategy.aggregate_evaluate(server_round, valid)
        if result is not None:
            record.federated_metrics = {k: float(v) for k, v in result.items()}
        return result


__all__ = ["AccountableStrategy"]
