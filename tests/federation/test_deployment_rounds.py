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

from fedctr.federation.client_app import PARTNER_CONFIG_KEY, evaluate, train
from fedctr.federation.grid import WAITS_ENV, ResponsiveGrid, responsive_grid
from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
from fedctr.privacy import wire as P
from fedctr.privacy.wire import ErrorCode, declared_keys
from fedctr.server.platform.strategies.round_timing import RoundTimer, read_timing


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


def _train_reply(received, src: int) -> Message:
    return received(RecordDict({P.REPORT: ConfigRecord({P.PARTNER_ID: f"p{src}"})}), src=src)


def test_round_timer_records_each_round_trip_as_the_platform_sees_it(
    tmp_path: Path, received
) -> None:
    clock = FakeClock()
    timer = RoundTimer(Recorder(received), tmp_path / "timing.jsonl", clock=clock)  # type: ignore[arg-type]

    timer.configure_train(1, ArrayRecord(), ConfigRecord(), None)  # type: ignore[arg-type]
    clock.now += 5.0
    timer.aggregate_train(
        1,
        [
            _train_reply(received, 1),
            _train_reply(received, 2),
            received(src=3, content=Error(code=5, reason="node gone")),
        ],
    )
    timer.configure_evaluate(1, ArrayRecord(), ConfigRecord(), None)  # type: ignore[arg-type]
    clock.now += 1.5
    timer.aggregate_evaluate(1, [])

    (row,) = read_timing(tmp_path / "timing.jsonl")
    assert row.pop("platform_peak_rss_mb") > 0  # this process's VmHWM, in MB
    assert row == {
        "round": 1,
        "train_wall_s": 5.0,
        "train_replies": 3,
        "evaluate_wall_s": 1.5,
        "evaluate_replies": 0,
    }


def test_client_app_replies_with_the_contract_only_and_refuses_evaluation(
    tmp_path: Path, synthetic_logs, received
) -> None:
    """A real partner node: asked to evaluate first, it sends no evaluation, no loss,
    no counts, no timing: exactly the declared train-reply keys."""
    from fedctr.clients.config import PrivacySettings, TrainingSettings
    from fedctr.federation.workspace import PartnerSetup, create_workspace
    from fedctr.server.platform.strategies.registry import strategy_config

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
                PrivacySettings(epsilon=4.0, planned_rounds=2, sample_rate=0.5),
                TrainingSettings(batch_size=600),
            )
        ],
        model=model_config("lr"),
        strategy=strategy_config(),
        rounds=2,
        eval_data=None,
    )
    spec = load_spec(spec_file)
    torch.manual_seed(0)
    weights = build_model(spec, model_config("lr")).state_dict()
    config = ConfigRecord(
        {
            P.RUN_ID: "r",
            P.SPEC_HASH: spec.spec_hash,
            P.MODEL_CONFIG: json.dumps(model_config("lr").to_dict()),
            P.SERVER_ROUND: 2,
            "evaluate-first": True,
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
    refused = evaluate(msg, context)

    assert not reply.has_error()
    declared = declared_keys("train-reply")
    assert set(reply.content.config_records) == {P.REPORT}
    assert set(reply.content[P.REPORT]) == declared[P.REPORT]
    assert set(reply.content[P.METRICS]) == declared[P.METRICS]
    assert isinstance(reply.content.metric_records[P.METRICS], MetricRecord)
    assert refused.has_error() and refused.error.code == ErrorCode.EVALUATION_OFF
