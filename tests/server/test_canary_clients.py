"""Canary clients inside the accountable strategy: real Flower FedAvg, real arrays.

Checks that canary updates enter the aggregate as extra clients with the mean declared
weight and a real update's median norm, that the round log (what the ledger and the
card are built from) names only the real partners, that metrics are the partners'
alone, and that robust aggregation is refused.
"""

from __future__ import annotations

import numpy as np
import pytest
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
from flwr.supercore.task_identity import TaskIdentity

from fedctr.privacy.audit.one_shot import canary_direction
from fedctr.privacy.wire import AGGREGATION_WEIGHT
from fedctr.server.platform.rounds import RoundLog
from fedctr.server.platform.strategies.accountable import AccountableStrategy
from fedctr.server.platform.strategies.canary_clients import (
    CanaryAuditError,
    CanaryClients,
    CanaryConfig,
    CanaryRecord,
)
from fedctr.server.platform.strategies.registry import build_strategy, strategy_config

DIM_W, DIM_B = (40, 30), (5,)


def _global() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal(DIM_W).astype(np.float32),
        "b": rng.standard_normal(DIM_B).astype(np.float32),
        "steps": np.array([3], dtype=np.int64),  # not a parameter: no canary component
    }


def _reply(node: int, state: dict[str, np.ndarray], weight: float, loss: float) -> Message:
    """A training reply as the grid hands it over (metadata stamped, no run context)."""
    content = RecordDict(
        {
            "arrays": _record(state),
            "metrics": MetricRecord({AGGREGATION_WEIGHT: weight, "train-loss": loss}),
        }
    )
    stamp = ("", node, 0, "ask", "1", 0.0, 600.0, MessageType.TRAIN)
    return Message(content, metadata=Metadata(1, *stamp))


def _record(state: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v.copy()) for k, v in state.items()})


def _flat(state: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([state["w"].ravel(), state["b"].ravel()]).astype(np.float64)


def test_canaries_enter_the_aggregate_with_mean_weight_and_never_the_round_log(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FedAvg's configure_train builds its messages in a run's task context
    for slot in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, slot, 1)
    config = CanaryConfig(canaries=3, unseen=4, participation=1.0, seed=9)
    record = CanaryRecord(config)
    round_log = RoundLog(tmp_path / "rounds.jsonl")
    strategy = AccountableStrategy(
        CanaryClients(build_strategy(strategy_config("fedavg", min_partners=2)), config, record),
        round_log,
        min_partners=2,
        require_dp=False,  # baseline replies: no signed report to forge in a unit test
    )
    g = _global()
    rng = np.random.default_rng(1)
    updates = [
        {**g, "w": g["w"] + 0.1 * rng.standard_normal(DIM_W).astype(np.float32)},
        {**g, "w": g["w"] + 0.3 * rng.standard_normal(DIM_W).astype(np.float32)},
    ]
    weights = [1.0, 3.0]
    list(strategy.configure_train(1, _record(g), ConfigRecord({}), _NoGrid()))
    replies = [
        _reply(11, updates[0], weights[0], 0.5),
        _reply(12, updates[1], weights[1], 0.7),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)

    start = _flat(g)
    scale = float(np.median([np.linalg.norm(_flat(u) - start) for u in updates]))
    weight = float(np.mean(weights))
    dim = start.size
    total = sum(weights) + config.canaries * weight
    expected = sum(w * _flat(u) for w, u in zip(weights, updates, strict=True))
    for i in range(config.canaries):
        expected = expected + weight * (start + scale * canary_direction(9, i, dim))
    expected = expected / total
    got = np.concatenate([arrays["w"].numpy().ravel(), arrays["b"].numpy().ravel()])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert arrays["steps"].numpy()[0] == pytest.approx(3.0)

    # the round log (-> platform ledger, card) names the two partners and nothing else
    logged = round_log.round(1)
    assert [t.node_id for t in logged.train] == [11, 12]
    assert logged.aggregated
    # metrics: the partners' weights summed and their loss averaged, no canary in them
    assert metrics[AGGREGATION_WEIGHT] == pytest.approx(4.0)
    assert metrics["train-loss"] == pytest.approx((0.5 * 1 + 0.7 * 3) / 4)

    # the record: every canary inserted; each shows in the delta, the unseen ones do not
    (only,) = record.rounds
    assert only.participants == (0, 1, 2)
    assert only.scale == pytest.approx(scale) and only.weight == pytest.approx(weight)
    assert record.inserted() == (0, 1, 2)
    seen = record.final_cosines(config.inserted_indices)
    unseen = record.final_cosines(config.unseen_indices)
    assert seen.min() > 5 * np.abs(unseen).max()
    np.testing.assert_allclose(record.max_round_cosines(range(7)), only.cosines)


def test_participation_below_one_leaves_canaries_out_of_some_rounds() -> None:
    config = CanaryConfig(canaries=20, unseen=2, participation=0.1, seed=3)
    wrapper = CanaryClients(build_strategy(strategy_config("fedavg")), config)
    counts = [len(wrapper._participants(r)) for r in range(1, 30)]
    assert 0 < np.mean(counts) < 5
    assert wrapper._participants(4) == wrapper._participants(4)  # reproducible per round


@pytest.mark.parametrize("name", ["fedmedian", "fedtrimmedavg", "krum"])
def test_robust_aggregation_is_refused(name: str) -> None:
    with pytest.raises(CanaryAuditError, match="do not fit"):
        CanaryClients(build_strategy(strategy_config(name)), CanaryConfig())


@pytest.mark.parametrize(
    "options", [{"canaries": 1}, {"unseen": 0}, {"participation": 0.0}, {"canaries": 2.5}]
)
def test_bad_config_is_a_domain_error(options: dict) -> None:
    with pytest.raises(CanaryAuditError):
        CanaryConfig(**options)


class _NoGrid:
    """FedAvg's configure_train asks the grid which nodes are connected, nothing else."""

    def get_node_ids(self) -> list[int]:
        return [11, 12]
