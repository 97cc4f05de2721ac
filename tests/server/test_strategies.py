"""Aggregation: epsilon is the worst partner's, bad replies never reach the average."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)

from federation import protocol as P
from models import state_dict_sha256
from server.errors import PlatformConfigError
from server.rounds import RoundLog
from server.strategies import (
    AccountableStrategy,
    StrategyConfig,
    aggregate_partner_metrics,
    available_strategies,
    build_strategy,
)


def _metadata(node: int) -> Metadata:
    """A reply's metadata as the SuperLink would stamp it."""
    return Metadata(
        run_id=1,
        message_id=f"m{node}",
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id="ask",
        group_id="1",
        created_at=time.time(),
        ttl=600,
        message_type="train",
    )


def _reply(
    node: int,
    weights: dict[str, np.ndarray],
    *,
    epsilon: float,
    n: int,
    claimed_hash: str | None = None,
) -> Message:
    report = {P.PARTNER_ID: f"p{node}", "update-hash": claimed_hash or state_dict_sha256(weights)}
    content = RecordDict(
        {
            P.ARRAYS: ArrayRecord({k: Array(v) for k, v in weights.items()}),
            P.METRICS: MetricRecord(
                {P.NUM_EXAMPLES: n, P.TRAIN_LOSS: 0.5, P.EPSILON: epsilon, P.DELTA: 1e-5}
            ),
            P.REPORT: ConfigRecord(report),
        }
    )
    return Message(content=content, metadata=_metadata(node))


def _error(node: int, code: int, reason: str) -> Message:
    return Message(error=Error(code=code, reason=reason), metadata=_metadata(node))


def _w(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 2), value, dtype=np.float32)}


def test_epsilon_and_delta_aggregate_as_max_loss_as_weighted_mean() -> None:
    records = [
        _reply(1, _w(0), epsilon=1.0, n=100).content,
        _reply(2, _w(0), epsilon=7.5, n=300).content,
    ]

    out = aggregate_partner_metrics(records, P.NUM_EXAMPLES)

    assert out[P.EPSILON] == 7.5
    assert out[P.NUM_EXAMPLES] == 400
    assert out[P.TRAIN_LOSS] == pytest.approx(0.5)


def test_refusals_and_tampered_updates_are_recorded_not_averaged() -> None:
    """An error reply, a non-finite update and an update whose hash differs from the
    ledgered one are dropped; the average is over the two honest partners only."""
    log = RoundLog()
    strategy = AccountableStrategy(
        build_strategy(StrategyConfig(min_partners=2)), log, min_partners=2
    )
    replies = [
        _reply(1, _w(1.0), epsilon=2.0, n=100),
        _reply(2, _w(3.0), epsilon=3.0, n=100),
        _reply(3, _w(math.nan), epsilon=1.0, n=100),
        _reply(4, _w(100.0), epsilon=1.0, n=100, claimed_hash="0" * 64),
        _error(5, P.ERROR_BUDGET_REFUSED, "partner p5 refuses: budget"),
    ]

    arrays, metrics = strategy.aggregate_train(1, replies)

    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 2.0))
    assert metrics[P.EPSILON] == 3.0
    record = log.round(1)
    assert record.aggregated
    assert sorted(t.partner_id for t in record.train) == ["p1", "p2"]
    kinds = sorted(f.kind for f in record.failures)
    assert kinds == ["budget-refused", "invalid-update", "invalid-update"]
    assert [t.partner_id for t in record.rejected] == ["p3", "p4"]


def test_fewer_than_min_partners_leaves_the_model_unchanged() -> None:
    log = RoundLog()
    strategy = AccountableStrategy(
        build_strategy(StrategyConfig(min_partners=2)), log, min_partners=2
    )

    arrays, metrics = strategy.aggregate_train(
        1, [_reply(1, _w(1.0), epsilon=2.0, n=10), _error(2, P.ERROR_BAD_DATA, "bad file")]
    )

    assert arrays is None and metrics is None
    assert not log.round(1).aggregated
    assert log.contributors() == {}


def test_every_registered_strategy_builds() -> None:
    assert {"fedavg", "fedprox", "fedadam", "fedmedian", "fedtrimmedavg", "krum"} <= set(
        available_strategies()
    )
    for name in available_strategies():
        build_strategy(StrategyConfig(name=name))


def test_unknown_strategy_is_a_config_error() -> None:
    with pytest.raises(PlatformConfigError, match="choose one of"):
        StrategyConfig(name="fedmagic")
