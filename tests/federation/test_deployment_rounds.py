"""One message round trip per round: replies collected promptly, evaluation carried in
the train message, and the time of each round split into transport and compute."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)

from federation import protocol as P
from federation.client_app import PARTNER_CONFIG_KEY, train
from federation.deployment.grid import WAITS_ENV, ResponsiveGrid, responsive_grid
from models import ModelConfig, build_model, builtin_spec_path, load_spec
from server.rounds import RoundLog
from server.strategies.evaluate_in_train import EvaluateInTrain
from server.strategies.round_timing import RoundTimer, read_timing


class ScriptedGrid:
    """Stands in for Flower's grid: replies to pushed ids appear after some pulls."""

    def __init__(self, arrive_after: dict[str, int], received) -> None:
        self.arrive_after = arrive_after
        self.received = received
        self.pulls = 0
        self.pushed: list[Message] = []

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        self.pushed.extend(messages)
        return list(self.arrive_after)

    def pull_messages(self, ids: Iterable[str]) -> list[Message]:
        self.pulls += 1
        return [
            self.received(RecordDict(), src=1, reply_to=i)
            for i in ids
            if self.arrive_after[i] == self.pulls
        ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_grid_returns_as_soon_as_the_last_reply_arrives(received) -> None:
    inner = ScriptedGrid({"a": 2, "b": 4}, received)
    clock = FakeClock()
    grid = ResponsiveGrid(inner, poll_s=0.05, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]

    replies = list(grid.send_and_receive([received(RecordDict())], timeout=60))

    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["a", "b"]
    assert inner.pulls == 4 and clock.sleeps == [0.05] * 3  # Flower's grid sleeps 3 s


def test_grid_gives_up_at_the_timeout_with_what_arrived(received) -> None:
    inner = ScriptedGrid({"a": 1, "b": 10_000}, received)
    clock = FakeClock()
    grid = ResponsiveGrid(inner, poll_s=0.5, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]

    replies = list(grid.send_and_receive([received(RecordDict())], timeout=2.0))

    assert [r.metadata.reply_to_message_id for r in replies] == ["a"]
    assert clock.now == pytest.approx(2.0)


def test_grid_sends_nothing_for_no_messages_and_stock_mode_keeps_flowers_grid(
    monkeypatch: pytest.MonkeyPatch, received
) -> None:
    inner = ScriptedGrid({}, received)
    assert list(ResponsiveGrid(inner).send_and_receive([], timeout=1)) == []  # type: ignore[arg-type]
    assert inner.pushed == [] and inner.pulls == 0

    monkeypatch.setenv(WAITS_ENV, "stock")
    assert responsive_grid(inner) is inner  # type: ignore[arg-type]
    monkeypatch.delenv(WAITS_ENV)
    assert isinstance(responsive_grid(inner), ResponsiveGrid)  # type: ignore[arg-type]


class Recorder:
    """The inner strategy: records what it was asked."""

    def __init__(self, received) -> None:
        self.received = received
        self.train_configs: list[ConfigRecord] = []
        self.evaluated: list[int] = []
        self.train_replies: dict[int, int] = {}

    def summary(self) -> None: ...

    def configure_train(self, rnd: int, arrays, config: ConfigRecord, grid) -> list[Message]:
        self.train_configs.append(config)
        return []

    def aggregate_train(self, rnd: int, replies: Iterable[Message]):
        self.train_replies[rnd] = len(list(replies))
        return None, None

    def configure_evaluate(self, rnd: int, arrays, config, grid) -> list[Message]:
        self.evaluated.append(rnd)
        return [self.received(RecordDict())]

    def aggregate_evaluate(self, rnd: int, replies: Iterable[Message]) -> None:
        return None


def _train_reply(
    received, src: int, partner: str, *, auc: float, n: int, compute: float
) -> Message:
    evaluation = ConfigRecord(
        {P.NUM_EXAMPLES: n, P.AUC: auc, P.LOGLOSS: 0.5, P.MEAN_PREDICTION: 0.2}
    )
    report = ConfigRecord({P.PARTNER_ID: partner, P.COMPUTE_SECONDS: compute})
    return received(RecordDict({P.REPORT: report, P.EVALUATION: evaluation}), src=src)


def test_evaluation_rides_in_the_next_train_message_and_lands_on_its_round(received) -> None:
    inner, log = Recorder(received), RoundLog()
    strategy = EvaluateInTrain(inner, log, num_rounds=3)  # type: ignore[arg-type]
    caller = ConfigRecord({P.RUN_ID: "r"})

    for rnd in (1, 2):
        strategy.configure_train(rnd, ArrayRecord(), caller, None)  # type: ignore[arg-type]
    evaluate_before_last = strategy.configure_evaluate(2, ArrayRecord(), caller, None)  # type: ignore[arg-type]
    evaluate_last = strategy.configure_evaluate(3, ArrayRecord(), caller, None)  # type: ignore[arg-type]
    replies = [
        _train_reply(received, 1, "shop-a", auc=0.6, n=100, compute=1.0),
        _train_reply(received, 2, "crm-c", auc=0.9, n=300, compute=2.0),
        received(src=3, content=Error(code=1002, reason="bad data")),
    ]
    strategy.aggregate_train(2, replies)

    assert [c[P.EVALUATE_FIRST] for c in inner.train_configs] == [False, True]
    assert P.EVALUATE_FIRST not in caller  # the caller's record is not written into
    assert list(evaluate_before_last) == [] and len(list(evaluate_last)) == 1
    assert inner.evaluated == [3] and inner.train_replies == {2: 3}
    round1 = log.round(1)
    assert sorted(e.partner_id for e in round1.evaluate) == ["crm-c", "shop-a"]
    assert round1.federated_metrics[P.AUC] == pytest.approx((0.6 * 100 + 0.9 * 300) / 400)
    assert log.round(2).evaluate == []


def test_round_timer_splits_each_round_into_wall_and_slowest_compute(
    tmp_path: Path, received
) -> None:
    clock = FakeClock()
    timer = RoundTimer(Recorder(received), tmp_path / "timing.jsonl", clock=clock)  # type: ignore[arg-type]

    timer.configure_train(1, ArrayRecord(), ConfigRecord(), None)  # type: ignore[arg-type]
    clock.now += 5.0
    timer.aggregate_train(
        1,
        [
            _train_reply(received, 1, "a", auc=0.5, n=1, compute=3.5),
            _train_reply(received, 2, "b", auc=0.5, n=1, compute=4.0),
            received(src=3, content=Error(code=5, reason="node gone")),
        ],
    )
    timer.configure_evaluate(1, ArrayRecord(), ConfigRecord(), None)  # type: ignore[arg-type]
    clock.now += 1.5
    timer.aggregate_evaluate(1, [])

    (row,) = read_timing(tmp_path / "timing.jsonl")
    assert row == {
        "round": 1,
        "train_wall_s": 5.0,
        "train_compute_s": 4.0,
        "train_replies": 3,
        "evaluate_wall_s": 1.5,
        "evaluate_compute_s": 0.0,
        "evaluate_replies": 0,
    }


def test_client_app_evaluates_the_received_model_before_training_it(
    tmp_path: Path, synthetic_logs, received
) -> None:
    """A real partner node: the train reply carries the pre-training evaluation."""
    from clients.config import PrivacySettings, TrainingSettings
    from federation.workspace import PartnerSetup, create_workspace
    from server.strategies.registry import StrategyConfig

    logs, _ = synthetic_logs
    spec_file = builtin_spec_path("demo")
    ws = create_workspace(
        tmp_path / "ws",
        spec_file=spec_file,
        spec=load_spec(spec_file),
        partners=[
            PartnerSetup(
                "shop-a",
                logs["shop-a"],
                PrivacySettings(epsilon=4.0, planned_rounds=2, max_grad_norm=5.0),
                TrainingSettings(batch_size=4096),  # full batch: instant calibration
            )
        ],
        model=ModelConfig(name="lr"),
        strategy=StrategyConfig(),
        rounds=2,
        eval_data=None,
    )
    spec = load_spec(spec_file)
    torch.manual_seed(0)
    weights = build_model(spec, ModelConfig(name="lr")).state_dict()
    config = ConfigRecord(
        {
            P.RUN_ID: "r",
            P.SPEC_HASH: spec.spec_hash,
            P.MODEL_CONFIG: json.dumps(ModelConfig(name="lr").to_dict()),
            P.SERVER_ROUND: 2,
            P.EVALUATE_FIRST: True,
        }
    )
    msg = received(RecordDict({P.ARRAYS: ArrayRecord(weights), P.CONFIG: config}))
    context = Context(
        run_id=1,
        node_id=1,
        node_config={PARTNER_CONFIG_KEY: str(ws.partner_configs["shop-a"])},
        state=RecordDict(),
        run_config={},
    )

    reply = train(msg, context)

    assert not reply.has_error()
    evaluation = reply.content.config_records[P.EVALUATION]
    assert 0.0 <= float(evaluation[P.AUC]) <= 1.0 and int(evaluation[P.NUM_EXAMPLES]) > 0
    assert float(reply.content.config_records[P.REPORT][P.COMPUTE_SECONDS]) > 0
    assert isinstance(reply.content.metric_records[P.METRICS], MetricRecord)
