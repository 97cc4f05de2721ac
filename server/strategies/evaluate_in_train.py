"""Evaluate the global model inside the next round's train message.

A stock round sends two messages to every partner: train, then evaluate the new
aggregate. Over a real network each message round trip has a fixed cost, so this
wrapper folds the evaluation of round ``r``'s aggregate into round ``r + 1``'s train
message (the partner evaluates the model it receives before training it) and
sends a separate evaluate message only after the last round. Same evaluations,
same metrics, one round trip per round instead of two.

The evaluation arriving in round ``r + 1`` is recorded on round ``r`` of the round
log, so the log reads exactly as with separate evaluate messages; the caller must
therefore flush round ``r`` only after round ``r + 1``'s train replies arrived
(:func:`server.orchestrator.run_federation` does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from federation import protocol as P
from server.rounds import PartnerEvalRecord, RoundLog
from server.strategies.metrics import aggregate_partner_metrics

logger = logging.getLogger(__name__)


def _evaluation(msg: Message) -> tuple[PartnerEvalRecord, MetricRecord] | None:
    """The evaluation a train reply carries, parsed as untrusted input, or None."""
    if msg.has_error():
        return None
    record = msg.content.config_records.get(P.EVALUATION)
    report = msg.content.config_records.get(P.REPORT)
    if record is None or report is None:
        return None
    try:
        metrics = {
            P.NUM_EXAMPLES: int(record[P.NUM_EXAMPLES]),
            P.AUC: float(record[P.AUC]),
            P.LOGLOSS: float(record[P.LOGLOSS]),
            P.MEAN_PREDICTION: float(record[P.MEAN_PREDICTION]),
        }
        evaluation = PartnerEvalRecord(
            partner_id=str(report[P.PARTNER_ID]),
            node_id=msg.metadata.src_node_id,
            num_examples=metrics[P.NUM_EXAMPLES],
            auc=metrics[P.AUC],
            logloss=metrics[P.LOGLOSS],
        )
    except (KeyError, TypeError, ValueError):
        return None
    return evaluation, MetricRecord(metrics)


class EvaluateInTrain(Strategy):
    """Delegate to ``strategy``; carry evaluations in train messages (see module doc)."""

    def __init__(self, strategy: Strategy, round_log: RoundLog, *, num_rounds: int) -> None:
        self.strategy = strategy
        self.round_log = round_log
        self.num_rounds = num_rounds

    def summary(self) -> None:
        logger.info("EvaluateInTrain(num_rounds=%d) wrapping:", self.num_rounds)
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config = ConfigRecord(dict(config))  # never write into the caller's record
        config[P.EVALUATE_FIRST] = server_round > 1
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if server_round > 1:
            self._record_evaluations(server_round - 1, replies)
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if server_round < self.num_rounds:
            return []  # evaluated inside the next round's train message
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def _record_evaluations(self, evaluated_round: int, replies: list[Message]) -> None:
        record = self.round_log.round(evaluated_round)
        metrics: list[RecordDict] = []
        for msg in replies:
            parsed = _evaluation(msg)
            if parsed is None:
                continue
            record.evaluate.append(parsed[0])
            metrics.append(RecordDict({P.METRICS: parsed[1]}))
        if metrics:
            aggregated = aggregate_partner_metrics(metrics, P.NUM_EXAMPLES)
            record.federated_metrics = {k: float(v) for k, v in aggregated.items()}


__all__ = ["EvaluateInTrain"]
