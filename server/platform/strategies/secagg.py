"""Secure aggregation (SecAgg+) around a FedAvg-like Flower strategy, on the Message API.

A wrapper in the style of Flower's DP wrappers. ``configure_train`` runs the
protocol's first two steps with the grid (partners announce fresh public keys, then
send each neighbour encrypted Shamir shares of their two mask secrets, routed by the
platform) and returns the training messages with each partner's forwarded shares:
partners train, seal their DP update into a masked input and reply.
``aggregate_train`` receives the masked replies that passed the accountable checks
(contract, commitment hash, signed ledger entry), asks the survivors for the shares
that remove the masks of the *sum*, and gives the inner strategy a single reply:
the weighted mean of the updates applied to the global model. The platform never
sees one partner's update.

What is lost against plain aggregation: checks that need one update (non-finite
values, robust statistics) cannot run; each masked input is still bound to its
signed ledger entry by its hash (a commitment), and the quantization clamp bounds
every coordinate. Strategies that need individual updates (median, trimmed mean,
Krum) are refused, as is a canary-client audit run (it injects plain updates).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedctr.privacy import wire as P
from fedctr.privacy.secagg import (
    PROTOCOL,
    AggregatorSession,
    Layout,
    SecAggAbort,
    SecAggSettings,
    dequantize,
)
from fedctr.privacy.wire import ContractViolation, TrainReply
from fedctr.server.platform.rounds import Failure, RoundLog
from fedctr.server.platform.strategies.accountable import failure_of
from fedctr.server.platform.strategies.wrapper import StrategyWrapper

logger = logging.getLogger(__name__)

#: Aggregations that are a weighted mean of the updates, so a sum is all they need.
SUMMABLE = ("fedavg", "fedprox", "fedadam")


@dataclass
class _Round:
    session: AggregatorSession
    grid: Grid
    arrays: ArrayRecord


class SecAggPlus(StrategyWrapper):
    """Delegate to ``strategy`` (FedAvg, FedProx, FedAdam), seeing only sums."""

    def __init__(
        self,
        strategy: Strategy,
        settings: SecAggSettings,
        *,
        round_log: RoundLog,
        timeout_s: float,
    ) -> None:
        super().__init__(strategy)
        self.settings = settings
        self.round_log = round_log
        self.timeout_s = timeout_s
        self._round: _Round | None = None

    def summary(self) -> None:
        logger.info("SecAggPlus(%s) wrapping:", self.settings)
        self.strategy.summary()

    # ---- what a masked reply must say ----------------------------------------------
    def reply_problem(self, server_round: int, reply: TrainReply) -> str | None:
        """Why a reply cannot be part of this round's sum, or None."""
        current = self._round
        if reply.secure_aggregation != PROTOCOL:
            return "a plain update in a secure-aggregation round"
        if current is None or current.session.server_round != server_round:
            # A committed round re-checked on resume: its session is over, and the signed
            # entry and the commitment hash are what can still be checked.
            return None
        if reply.secagg_session != current.session.session:
            return "a masked update from another secure-aggregation session"
        return None

    # ---- steps 1-3 ---------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self._round = None
        if not messages:
            return []
        nodes = [m.metadata.dst_node_id for m in messages]
        session = AggregatorSession(
            self.settings, secrets.token_hex(16), server_round, sorted(nodes)
        )
        base = {
            "session": session.session,
            "round": server_round,
            "settings": json.dumps(self.settings.to_dict()),
        }
        for node, reply in self._ask(grid, session, {n: {"stage": "setup"} for n in nodes}, base):
            session.accept_keys(node, reply["key-c"], reply["key-s"])
        keyed = session.key_nodes()
        keys = [session.public[n] for n in keyed]
        announce = {
            "stage": "share-keys",
            "nodes": P.node_ids_to_bytes(keyed),
            "keys-c": [c for c, _ in keys],
            "keys-s": [s for _, s in keys],
        }
        asked = {n: announce for n in keyed}
        for node, reply in self._ask(grid, session, asked, base):
            session.accept_shares(
                node, reply["recipients"], reply["ciphertexts"], reply["commitment"]
            )
        self._note_exclusions(session)
        self._round = _Round(session, grid, arrays)
        out = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            if node not in session.commitments:
                continue
            senders, ciphertexts = session.forwarded(node)
            content = RecordDict(dict(msg.content.items()))  # the model record is shared
            content[P.SECAGG] = ConfigRecord(
                {
                    **base,
                    "stage": "collect",
                    "senders": P.node_ids_to_bytes(senders),
                    "ciphertexts": ciphertexts,
                }
            )
            out.append(Message(content, node, MessageType.TRAIN, group_id=str(server_round)))
        logger.info(
            "round %d: secure aggregation session %s: %d of %d partner(s) shared their keys",
            server_round,
            session.session[:8],
            len(out),
            len(nodes),
        )
        return out

    # ---- step 4 ------------------------------------------------------------------------
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        current = self._round
        replies = list(replies)
        if current is None or not replies:
            return None, None
        session = current.session
        masked: dict[int, np.ndarray] = {}
        weights: dict[int, int] = {}
        metrics: list[MetricRecord] = []
        model = {name: a.numpy() for name, a in current.arrays.items()}
        layout = Layout.of(model)
        for msg in replies:
            node = msg.metadata.src_node_id
            arrays = msg.content[P.ARRAYS]
            vector = arrays[P.MASKED].numpy() if P.MASKED in arrays else None
            if vector is None or set(arrays) != {P.MASKED} or vector.shape != (layout.size,):
                self._fail(server_round, node, "masked input does not fit the model")
                continue
            if node not in session.commitments:
                self._fail(server_round, node, "masked input from a node that shared no keys")
                continue
            weight = float(msg.content[P.METRICS][P.AGGREGATION_WEIGHT])
            if weight != int(weight) or not 1 <= weight <= self.settings.max_weight:
                self._fail(server_round, node, "aggregation weight is not a whole number in range")
                continue
            masked[node] = vector.view(np.uint64)
            weights[node] = int(weight)
            metrics.append(msg.content[P.METRICS])
        survivors = set(masked)
        requests = {}
        for node in sorted(survivors):
            active, dropped = session.unmask_request(node, survivors)
            requests[node] = {
                "stage": "unmask",
                "active": P.node_ids_to_bytes(active),
                "dropped": P.node_ids_to_bytes(dropped),
            }
        base = {"session": session.session, "round": server_round}
        for node, reply in self._ask(current.grid, session, requests, base):
            session.accept_unmask(node, reply["owners"], reply["shares"], survivors)
        self._note_exclusions(session)
        try:
            total = session.unmask(masked)
        except SecAggAbort as exc:
            logger.error("%s", exc)
            return None, None
        mean = dequantize(total, self.settings) / sum(weights.values())
        state = {name: torch.from_numpy(np.array(value)) for name, value in model.items()}
        for name, delta in layout.unflatten(mean).items():
            state[name] = torch.from_numpy(
                (model[name].astype(np.float64) + delta).astype(model[name].dtype)
            )
        summed = MetricRecord(
            {
                P.AGGREGATION_WEIGHT: float(sum(weights.values())),
                P.EPSILON: max(float(m[P.EPSILON]) for m in metrics),
                P.DELTA: max(float(m[P.DELTA]) for m in metrics),
            }
        )
        unmasked = Message(
            RecordDict({P.ARRAYS: ArrayRecord(state), P.METRICS: summed}),
            0,
            MessageType.TRAIN,
        )
        logger.info(
            "round %d: unmasked the sum of %d masked input(s) (%d dropped after sharing)",
            server_round,
            len(survivors),
            len(session.commitments) - len(survivors),
        )
        return self.strategy.aggregate_train(server_round, [unmasked])

    # ---- transport ---------------------------------------------------------------------
    def _ask(
        self,
        grid: Grid,
        session: AggregatorSession,
        requests: dict[int, dict[str, object]],
        base: dict[str, object],
    ) -> list[tuple[int, dict[str, object]]]:
        """Send each node its request; the contract-parsed replies of those that answered."""
        messages = [
            Message(
                RecordDict({P.SECAGG: ConfigRecord({**base, **request})}),  # type: ignore[dict-item]
                node,
                MessageType.TRAIN,
                group_id=str(session.server_round),
            )
            for node, request in requests.items()
        ]
        out = []
        for reply in grid.send_and_receive(messages, timeout=self.timeout_s):
            node = reply.metadata.src_node_id
            stage = str(requests[node]["stage"])
            if reply.has_error():
                failure = failure_of(reply)
                self.round_log.round(session.server_round).failures.append(failure)
                logger.warning(
                    "round %d: node %d left secure aggregation at '%s' (%s: %s)",
                    session.server_round,
                    node,
                    stage,
                    failure.kind,
                    failure.problem,
                )
                continue
            try:
                record = reply.content.config_records[P.SECAGG]
                out.append((node, P.parse_secagg_reply(stage, dict(record))))
            except (KeyError, ContractViolation) as exc:
                session.excluded[node] = f"secagg-contract-violation: {exc}"
        return out

    def _note_exclusions(self, session: AggregatorSession) -> None:
        record = self.round_log.round(session.server_round)
        noted = {(f.node_id, f.problem) for f in record.failures}
        for node, why in sorted(session.excluded.items()):
            if (node, why) not in noted:
                record.failures.append(Failure(node, "secagg", why[:200]))

    def _fail(self, server_round: int, node: int, why: str) -> None:
        logger.warning("round %d: node %d: %s", server_round, node, why)
        self.round_log.round(server_round).failures.append(Failure(node, "invalid-update", why))


__all__ = ["SUMMABLE", "SecAggPlus"]
