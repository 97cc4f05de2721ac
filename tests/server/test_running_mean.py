"""FedAvg-family aggregation holds O(model): each reply is checked, added to a running
weighted sum and let go before the next arrives; the result is the list aggregate."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.supercore.task_identity import TaskIdentity

from fedctr.server.platform.rounds import RoundLog
from fedctr.server.platform.strategies import AccountableStrategy, build_strategy, strategy_config
from tests.server.test_strategies import _reply

SHAPES = {"emb": (50, 8), "w": (8,)}


def _weights(seed: int, shapes=SHAPES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def _global() -> ArrayRecord:
    return ArrayRecord({k: Array(np.zeros(s, np.float32)) for k, s in SHAPES.items()})


def _accountable(name: str, *, fold: bool) -> AccountableStrategy:
    strategy = AccountableStrategy(
        build_strategy(strategy_config(name, min_partners=2)),
        RoundLog(),
        min_partners=2,
        fold=fold,
    )
    strategy.configure_train(1, _global(), ConfigRecord(), grid=_NoGrid())
    return strategy


class _NoGrid:
    """configure_train's grid: node ids only (no message is sent in these tests)."""

    def get_node_ids(self) -> list[int]:
        return list(range(1, 7))


@pytest.fixture(autouse=True)
def _task_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower's configure_train builds its messages in a run's task context."""
    for slot in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, slot, 1)


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedadam"])
def test_the_folded_aggregate_is_the_list_aggregate(name: str) -> None:
    weights = [1.0, 3.0, 0.5, 2.0]

    def replies():
        return [
            _reply(n + 1, _weights(n), epsilon=1.0 + n, weight=w) for n, w in enumerate(weights)
        ]

    listed, listed_metrics = _accountable(name, fold=False).aggregate_train(1, replies())
    folded, folded_metrics = _accountable(name, fold=True).aggregate_train(1, replies())

    for key in SHAPES:
        np.testing.assert_allclose(folded[key].numpy(), listed[key].numpy(), rtol=1e-6, atol=1e-7)
    assert dict(folded_metrics) == pytest.approx(dict(listed_metrics))


def test_replies_are_released_as_they_are_folded() -> None:
    """The platform's memory does not grow with the number of partners: when a reply
    arrives, every reply but the one just folded (still the loop's variable) is gone."""
    previous: list[weakref.ref] = []

    def arriving() -> Iterator:
        for n in range(6):
            gc.collect()
            assert all(ref() is None for ref in previous[:-1]), "an earlier reply is still held"
            msg = _reply(n + 1, _weights(n), epsilon=1.0)
            previous.append(weakref.ref(msg))
            yield msg
            del msg

    arrays, _ = _accountable("fedavg", fold=True).aggregate_train(1, arriving())
    expected = np.mean([_weights(n)["emb"] for n in range(6)], axis=0)
    np.testing.assert_allclose(arrays["emb"].numpy(), expected, rtol=1e-6, atol=1e-7)


def test_an_update_that_does_not_fit_the_model_is_rejected_not_folded() -> None:
    log = RoundLog()
    strategy = _accountable("fedavg", fold=True)
    strategy.round_log = log
    replies = [
        _reply(1, _weights(1), epsilon=1.0),
        _reply(2, _weights(2), epsilon=1.0),
        _reply(3, _weights(3, {"emb": (50, 8), "w": (9,)}), epsilon=1.0),
        _reply(4, {"emb": _weights(4)["emb"]}, epsilon=1.0),
    ]

    arrays, _ = strategy.aggregate_train(1, replies)

    np.testing.assert_allclose(
        arrays["w"].numpy(), (_weights(1)["w"] + _weights(2)["w"]) / 2, rtol=1e-6
    )
    problems = {f.node_id: f.problem for f in log.round(1).failures}
    assert set(problems) == {3, 4}
    assert "shape" in problems[3] and "arrays" in problems[4]
