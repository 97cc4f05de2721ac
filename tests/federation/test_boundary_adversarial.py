"""A malicious server against real partner nodes, through real Flower messages.

The ServerApp here is the attacker: it sends crafted weights (huge, so a target
row's loss would dominate) and crafted configs (asking for evaluation first,
unknown keys) to the real fedctr ClientApp on Flower's simulation engine, then
evaluate messages, then more training after a partner's budget is spent. Two of
the partners hold neighbouring logs (one row apart). The tests read what came
back and prove the privacy boundary:

- every reply, train or error, carries only what ``fedctr.privacy.wire`` declares;
- (a) everything in a train reply besides the DP update and its hash is identical
  for neighbouring logs: the loss attack has nothing to read;
- (b) evaluation returns nothing, also on crafted weights and after the budget is
  spent;
- (d) an error reply names a reason class and column, never a row or a value.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.federation.simulation import run_simulation
from fedctr.federation.workspace import PartnerSetup, create_workspace
from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
from fedctr.privacy import wire as P
from fedctr.privacy.wire import (
    METRICS,
    REPORT,
    ErrorCode,
    ErrorReply,
    TrainReply,
    declared_keys,
)
from fedctr.server.platform.strategies.registry import strategy_config

pytestmark = pytest.mark.slow

MAGIC_VALUE = "MAGIC7391"
MAGIC_ROW = 777


def _crafted_weights(spec) -> dict[str, torch.Tensor]:
    """Weights a loss attack would send: huge, so one row's loss dominates any sum."""
    torch.manual_seed(0)
    model = build_model(spec, model_config("lr"))
    return {k: v * 0 + 50.0 * torch.randn_like(v) for k, v in model.state_dict().items()}


def _message(grid: Grid, node: int, kind: str, weights, server_round: int, spec) -> Message:
    config = ConfigRecord(
        {
            P.RUN_ID: "attack",
            P.SERVER_ROUND: server_round,
            P.SPEC_HASH: spec.spec_hash,
            P.MODEL_CONFIG: '{"name": "lr"}',
            "evaluate-first": True,  # the old evaluate-in-train switch
            "send-everything": True,  # an unknown key a malicious server might try
        }
    )
    content = RecordDict({P.ARRAYS: ArrayRecord(weights), P.CONFIG: config})
    return grid.create_message(content, kind, node, group_id=str(server_round))


def _snapshot(msg: Message) -> dict:
    """Everything a reply carries, as plain values."""
    if msg.has_error():
        return {"error": (msg.error.code, msg.error.reason)}
    content = msg.content
    return {
        "arrays": {k: dict(v) for k, v in content.array_records.items()},
        "records": {
            **{k: dict(v) for k, v in content.metric_records.items()},
            **{k: dict(v) for k, v in content.config_records.items()},
        },
    }


def _attacker(spec, log: list[tuple[str, dict]]) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            attack(grid)
        except Exception as exc:  # Flower would swallow it: make the test fail loudly
            log.append(("attacker-crashed", {"error": repr(exc)}))

    def attack(grid: Grid) -> None:
        deadline = time.monotonic() + 120
        while len(nodes := sorted(grid.get_node_ids())) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)  # the attacker polls for its victims, as Flower's strategies do
        weights = _crafted_weights(spec)
        for step, kind in enumerate(
            [MessageType.TRAIN, MessageType.EVALUATE, MessageType.TRAIN, MessageType.EVALUATE]
        ):
            messages = [_message(grid, n, kind, weights, step // 2 + 1, spec) for n in nodes]
            for reply in grid.send_and_receive(messages, timeout=300):
                log.append((f"{kind}-{step // 2 + 1}", _snapshot(reply)))

    return app


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory, synthetic_logs):
    logs, _ = synthetic_logs
    root = tmp_path_factory.mktemp("attack")
    table = pq.read_table(logs["shop-a"])
    with_target = root / "with-target.parquet"
    without_target = root / "without-target.parquet"
    pq.write_table(table, with_target)
    pq.write_table(table.slice(1), without_target)  # row 0 is the target
    labels = [str(v) for v in table.column("click").to_pylist()]
    labels[MAGIC_ROW - 1] = MAGIC_VALUE  # the only bad value of an otherwise clean log
    bad = table.set_column(table.schema.get_field_index("click"), "click", [labels])
    rejecting = root / "rejecting.parquet"
    pq.write_table(bad, rejecting)

    privacy = PrivacySettings(epsilon=4.0, planned_rounds=2, sample_rate=0.2)
    training = TrainingSettings(batch_size=240, learning_rate=0.01)
    spec_file = builtin_spec_path("demo")
    spec = load_spec(spec_file)
    ws = create_workspace(
        root / "fed",
        spec_file=spec_file,
        spec=spec,
        partners=[
            PartnerSetup("nb-with", with_target, privacy, training),
            PartnerSetup("nb-without", without_target, privacy, training),
            PartnerSetup("spent", without_target, replace(privacy, planned_rounds=1), training),
            PartnerSetup("rejecting", rejecting, privacy, training, bad_rows="reject"),
        ],
        model=model_config("lr"),
        strategy=strategy_config(min_partners=2),
        rounds=2,
        eval_data=None,
    )
    log: list[tuple[str, dict]] = []
    run_simulation(
        platform_config=ws.platform_config,
        partner_configs=list(ws.partner_configs.values()),
        run_id="attack",
        flwr_home=root / "flwr-home",
        server_app=_attacker(spec, log),
    )
    return log


def _train_replies(log, step: str) -> dict[str, TrainReply]:
    out = {}
    for kind, snap in log:
        if kind == step and "records" in snap:
            reply = TrainReply.from_records(snap["records"])
            out[reply.partner_id] = reply
    return out


def test_every_reply_carries_only_declared_values(attacked) -> None:
    """Contract test: every record, key and error text of every real reply is declared."""
    train_keys = declared_keys("train-reply")
    assert len(attacked) == 16  # 4 partners x 4 messages: every message was answered
    for _, snap in attacked:
        if "error" in snap:
            ErrorReply.parse(*snap["error"])  # raises on any undeclared code or text
            continue
        assert set(snap["arrays"]) == {P.ARRAYS}
        assert {k: set(v) for k, v in snap["records"].items()} == {
            METRICS: train_keys[METRICS],
            REPORT: train_keys[REPORT],
        }


def test_loss_attack_reads_nothing_beyond_the_dp_update(attacked) -> None:
    """(a) Neighbouring logs give identical replies except the DP update and its hash."""
    replies = _train_replies(attacked, "train-1")
    with_target, without = replies["nb-with"], replies["nb-without"]
    public = {k: v for k, v in with_target.to_records()[REPORT].items()}
    other = {k: v for k, v in without.to_records()[REPORT].items()}
    for key in ("partner-id", "update-hash", "ledger-entry"):  # id, DP post-processing
        public.pop(key), other.pop(key)
    assert public == other
    assert with_target.to_records()[METRICS] == without.to_records()[METRICS]
    assert "train-loss" not in str(attacked) and "num-examples" not in str(attacked)


def test_evaluation_is_refused_on_crafted_weights_and_after_the_budget(attacked) -> None:
    """(b) No evaluate message is answered with metrics; nor is a spent budget trained."""
    evaluations = [snap for kind, snap in attacked if kind.startswith("evaluate")]
    assert len(evaluations) == 8
    for snap in evaluations:
        code, reason = snap["error"]
        assert code == ErrorCode.EVALUATION_OFF and reason == "problem=evaluation-off"
    second = [snap for kind, snap in attacked if kind == "train-2" and "error" in snap]
    refused = [ErrorReply.parse(*s["error"]) for s in second]
    assert any(r.code is ErrorCode.BUDGET_REFUSED for r in refused)  # the 'spent' partner


def test_error_replies_name_the_column_never_the_row_or_value(attacked) -> None:
    """(d) The rejecting partner's reply: code, reason class, file name and column only."""
    errors = [
        ErrorReply.parse(*snap["error"])
        for kind, snap in attacked
        if kind.startswith("train") and "error" in snap
    ]
    bad = [e for e in errors if e.code is ErrorCode.BAD_DATA]
    assert bad and all(e.column == "click" and e.file == "rejecting.parquet" for e in bad)
    text = str(attacked)
    assert MAGIC_VALUE not in text
    assert f"row {MAGIC_ROW}" not in text and f"row={MAGIC_ROW}" not in text
