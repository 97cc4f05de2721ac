"""Aggregation: epsilon is the worst partner's, bad replies never reach the average."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
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

from fedctr.models import state_dict_sha256
from fedctr.privacy import DPSGDRound, PrivacyBudget
from fedctr.privacy import wire as P
from fedctr.privacy.ledger import GENESIS_HASH, PartnerRelease, make_entry
from fedctr.privacy.signing import generate_signing_key
from fedctr.privacy.wire import ErrorCode, TrainReply
from fedctr.server.platform.errors import PlatformConfigError
from fedctr.server.platform.ledger import PlatformLedger
from fedctr.server.platform.rounds import RoundLog
from fedctr.server.platform.strategies import (
    AccountableStrategy,
    aggregate_partner_metrics,
    available_strategies,
    build_strategy,
    strategy_config,
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


KEYS = {f"p{n}": generate_signing_key() for n in range(1, 8)}
MECHANISM = DPSGDRound(noise_multiplier=1.1, sample_rate=0.05, steps=20, max_grad_norm=5.0)


def _signed_reply(
    node: int,
    weights: dict[str, np.ndarray],
    *,
    epsilon: float,
    weight: float = 1.0,
    claimed_hash: str | None = None,
    signer: Ed25519PrivateKey | None = None,
    server_round: int = 1,
) -> TrainReply:
    """A reply as an honest partner node builds it: signed ledger entry included."""
    partner = f"p{node}"
    update_hash = claimed_hash or state_dict_sha256(weights)
    body = PartnerRelease(
        run_id="run",
        round=server_round,
        partner_id=partner,
        base_model_hash="b" * 64,
        update_hash=update_hash,
        mechanism=MECHANISM,
        accountant="rdp",
        dp_implementation="fedctr-sparse",
        unit_of_privacy="example",
        epsilon_after=epsilon,
        delta=1e-5,
        budget=PrivacyBudget(epsilon=8.0, delta=1e-5),
    )
    entry = make_entry(
        seq=0,
        owner=partner,
        body=body,
        prev_hash=GENESIS_HASH,
        signing_key=signer or KEYS[partner],
    )
    return TrainReply(
        partner_id=partner,
        release=MECHANISM,
        accountant="rdp",
        dp_implementation="fedctr-sparse",
        epsilon=epsilon,
        delta=1e-5,
        budget=PrivacyBudget(epsilon=8.0, delta=1e-5),
        aggregation_weight=weight,
        base_model_hash="b" * 64,
        update_hash=update_hash,
        ledger_entry=entry.to_json(),
    )


def _message(node: int, weights: dict[str, np.ndarray], records: dict[str, dict]) -> Message:
    content = RecordDict(
        {
            P.ARRAYS: ArrayRecord({k: Array(v) for k, v in weights.items()}),
            P.METRICS: MetricRecord(records[P.METRICS]),
            P.REPORT: ConfigRecord(records[P.REPORT]),
        }
    )
    return Message(content=content, metadata=_metadata(node))


def _reply(node: int, weights: dict[str, np.ndarray], **kwargs) -> Message:
    return _message(node, weights, _signed_reply(node, weights, **kwargs).to_records())


def _error(node: int, code: int, reason: str) -> Message:
    return Message(error=Error(code=code, reason=reason), metadata=_metadata(node))


def _w(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 2), value, dtype=np.float32)}


@pytest.fixture
def ledger(tmp_path) -> PlatformLedger:
    registered = {pid: key.public_key() for pid, key in KEYS.items() if pid != "p7"}
    return PlatformLedger(
        tmp_path / "platform.jsonl", generate_signing_key(), partner_keys=registered
    )


def _strategy(log: RoundLog, ledger: PlatformLedger | None = None) -> AccountableStrategy:
    def check(rnd: int, reply: TrainReply) -> str | None:
        return ledger.entry_problem(run_id="run", server_round=rnd, reply=reply)

    return AccountableStrategy(
        build_strategy(strategy_config(min_partners=2)),
        log,
        min_partners=2,
        check_reply=None if ledger is None else check,
    )


def test_epsilon_and_delta_aggregate_as_max_weights_as_declared() -> None:
    records = [
        _reply(1, _w(0), epsilon=1.0, weight=1.0).content,
        _reply(2, _w(0), epsilon=7.5, weight=3.0).content,
    ]

    out = aggregate_partner_metrics(records, P.AGGREGATION_WEIGHT)

    assert out[P.EPSILON] == 7.5
    assert out[P.AGGREGATION_WEIGHT] == 4.0


def test_fedavg_weights_updates_by_declared_weight_not_row_count() -> None:
    log = RoundLog()
    replies = [
        _reply(1, _w(1.0), epsilon=1.0, weight=1.0),
        _reply(2, _w(5.0), epsilon=1.0, weight=3.0),
    ]

    arrays, _ = _strategy(log).aggregate_train(1, replies)

    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 4.0))


def test_refusals_and_tampered_updates_are_recorded_not_averaged() -> None:
    """An error reply, a non-finite update and an update whose hash differs from the
    ledgered one are dropped; the average is over the two honest partners only."""
    log = RoundLog()
    replies = [
        _reply(1, _w(1.0), epsilon=2.0),
        _reply(2, _w(3.0), epsilon=3.0),
        _reply(3, _w(math.nan), epsilon=1.0),
        _reply(4, _w(100.0), epsilon=1.0, claimed_hash="0" * 64),
        _error(5, int(ErrorCode.BUDGET_REFUSED), "problem=budget-exhausted"),
    ]

    arrays, metrics = _strategy(log).aggregate_train(1, replies)

    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 2.0))
    assert metrics[P.EPSILON] == 3.0
    record = log.round(1)
    assert record.aggregated
    assert sorted(t.partner_id for t in record.train) == ["p1", "p2"]
    kinds = sorted(f.kind for f in record.failures)
    assert kinds == ["budget-refused", "invalid-update", "invalid-update"]
    assert [t.partner_id for t in record.rejected] == ["p3", "p4"]


def _without(message: Message, record: str, key: str) -> Message:
    records = {
        P.METRICS: dict(message.content[P.METRICS]),
        P.REPORT: dict(message.content[P.REPORT]),
    }
    del records[record][key]
    weights = {k: a.numpy() for k, a in message.content[P.ARRAYS].items()}
    return _message(message.metadata.src_node_id, weights, records)


def test_fail_closed_missing_hash_missing_entry_unregistered_key_bad_signature(ledger) -> None:
    """(e) None of these updates is aggregated; each is recorded with a code."""
    log = RoundLog()
    honest = [_reply(1, _w(1.0), epsilon=1.0), _reply(2, _w(3.0), epsilon=1.0)]
    hostile = [
        _without(_reply(3, _w(50.0), epsilon=1.0), P.REPORT, "update-hash"),
        _without(_reply(4, _w(50.0), epsilon=1.0), P.REPORT, "ledger-entry"),
        _reply(7, _w(50.0), epsilon=1.0),  # p7 has no registered key
        _reply(5, _w(50.0), epsilon=1.0, signer=KEYS["p6"]),  # signed with another key
        _reply(6, _w(50.0), epsilon=1.0, server_round=2),  # an entry for another round
    ]

    arrays, _ = _strategy(log, ledger).aggregate_train(1, honest + hostile)

    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 2), 2.0))
    record = log.round(1)
    assert sorted(t.partner_id for t in record.train) == ["p1", "p2"]
    assert sorted(f.kind for f in record.failures) == [
        "contract-violation",
        "contract-violation",
        "invalid-update",
        "invalid-update",
        "invalid-update",
    ]
    reasons = " ".join(f.problem for f in record.failures)
    assert "no registered public key" in reasons and "signature does not verify" in reasons


def test_undeclared_reply_values_are_a_contract_violation() -> None:
    """A reply with an extra metric (e.g. a training loss) is never aggregated."""
    log = RoundLog()
    extra = _reply(3, _w(50.0), epsilon=1.0)
    records = {P.METRICS: dict(extra.content[P.METRICS]), P.REPORT: dict(extra.content[P.REPORT])}
    records[P.METRICS]["train-loss"] = 0.25
    replies = [
        _reply(1, _w(1.0), epsilon=1.0),
        _reply(2, _w(3.0), epsilon=1.0),
        _message(3, _w(50.0), records),
    ]

    _strategy(log).aggregate_train(1, replies)

    assert [f.kind for f in log.round(1).failures] == ["contract-violation"]


def test_error_replies_keep_only_declared_fields() -> None:
    """An error whose text carries anything undeclared is kept as a bare code."""
    log = RoundLog()
    replies = [
        _error(1, int(ErrorCode.BAD_DATA), "problem=bad-label file=a.csv column=click"),
        _error(2, int(ErrorCode.BAD_DATA), "a.csv: row 17, column 'click': got 'MAGIC'"),
    ]

    _strategy(log).aggregate_train(1, replies)

    first, second = log.round(1).failures
    assert (first.kind, first.problem, first.column) == ("bad-data", "bad-label", "click")
    assert (second.kind, second.problem) == ("contract-violation", "undeclared-error")
    assert "MAGIC" not in str(log.round(1).to_json())


def test_fewer_than_min_partners_leaves_the_model_unchanged() -> None:
    log = RoundLog()
    replies = [
        _reply(1, _w(1.0), epsilon=2.0),
        _error(2, int(ErrorCode.BAD_DATA), "problem=unreadable-file"),
    ]

    arrays, metrics = _strategy(log).aggregate_train(1, replies)

    assert arrays is None and metrics is None
    assert not log.round(1).aggregated
    assert log.contributors() == {}


def test_every_registered_strategy_builds() -> None:
    assert {"fedavg", "fedprox", "fedadam", "fedmedian", "fedtrimmedavg", "krum"} <= set(
        available_strategies()
    )
    for name in available_strategies():
        build_strategy(strategy_config(name))


def test_unknown_strategy_is_a_config_error() -> None:
    with pytest.raises(PlatformConfigError, match="choose one of"):
        strategy_config("fedmagic")
