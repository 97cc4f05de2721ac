"""A real Flower simulation (Ray) of a federation where things go wrong, end to end.

One run covers: a partner that runs out of budget and refuses, a partner whose
file is broken, a partner with bad rows it skips, a partner whose log has one bad
value and rejects it; the platform aggregates the rest, publishes a signed model
whose card names only real contributors, and the audit passes. Nothing of the bad
row (its value, its row number) reaches any file or log record on the platform's
side. No mock stands in for Flower, Opacus or the signature.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.federation.simulation import run_simulation
from fedctr.federation.workspace import PartnerSetup, create_workspace
from fedctr.models import builtin_spec_path, load_spec, model_config
from fedctr.privacy.audit import audit_directories
from fedctr.privacy.ledger import read_ledger
from fedctr.privacy.secagg import SecAggSettings
from fedctr.server.platform.strategies.registry import strategy_config
from fedctr.server.registry import verify_model_main

pytestmark = pytest.mark.slow


MAGIC_VALUE = "MAGIC4417"
MAGIC_ROW = 1234


class _PlatformLog(logging.Handler):
    """Every log record the platform's process emits while the run is on."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module", params=["plain", "secagg"])
def finished_run(request, tmp_path_factory: pytest.TempPathFactory, synthetic_logs):
    """The run twice: plain FedAvg, and under SecAgg+ (where the refusing and broken
    partners drop out after sharing their keys, so their masks must be removed)."""
    logs, test_file = synthetic_logs
    root = tmp_path_factory.mktemp(f"sim-{request.param}")
    broken = root / "broken-d.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    table = pq.read_table(logs["shop-a"])
    labels = [str(v) for v in table.column("click").to_pylist()]
    labels[MAGIC_ROW - 1] = MAGIC_VALUE
    rejecting = root / "strict-e.parquet"
    pq.write_table(table.set_column(0, "click", [labels]), rejecting)
    privacy = PrivacySettings(epsilon=4.0, delta=1e-5, planned_rounds=2, sample_rate=0.25)
    training = TrainingSettings(batch_size=256, local_epochs=1, learning_rate=0.01)
    partners = [
        # shop-a restricts each step to DP-selected embedding rows; crm-c protects users
        PartnerSetup("shop-a", logs["shop-a"], replace(privacy, bucket_selection=True), training),
        PartnerSetup(
            "advertiser-b", logs["advertiser-b"], replace(privacy, planned_rounds=1), training
        ),
        PartnerSetup(
            "crm-c", logs["crm-c"], replace(privacy, unit="user", max_rows_per_user=4), training
        ),
        PartnerSetup("broken-d", broken, privacy, training),
        PartnerSetup("strict-e", rejecting, privacy, training, bad_rows="reject"),
    ]
    spec_file = builtin_spec_path("demo")
    ws = create_workspace(
        root / "fed",
        spec_file=spec_file,
        spec=load_spec(spec_file),
        partners=partners,
        model=model_config("lr"),
        strategy=strategy_config(min_partners=2),
        rounds=2,
        eval_data=test_file,
        secure_aggregation=SecAggSettings() if request.param == "secagg" else None,
    )
    platform_log = _PlatformLog()
    logging.getLogger().addHandler(platform_log)
    try:
        run_simulation(
            platform_config=ws.platform_config,
            partner_configs=list(ws.partner_configs.values()),
            run_id="sim-test",
            flwr_home=root / "flwr-home",
        )
    finally:
        logging.getLogger().removeHandler(platform_log)
    summary = json.loads((ws.runs / "sim-test" / "summary.json").read_text())
    return ws, summary, platform_log.lines


def _secagg(ws) -> bool:
    return "[secure_aggregation]" in Path(ws.platform_config).read_text()


def test_refusals_and_broken_files_do_not_stop_the_federation(finished_run) -> None:
    """Round 1: three contribute, the broken and the strict file fail; round 2: the
    partner out of budget refuses; both rounds aggregate. Under SecAgg+ the five took
    part in the key exchange, so round 2's two survivors are fewer than the threshold
    (3 of 5): the sum is not unmasked and the round is not aggregated, as it must not be."""
    ws, summary, lines = finished_run
    r1, r2 = summary["rounds"]

    assert sorted(t["partner_id"] for t in r1["train"]) == ["advertiser-b", "crm-c", "shop-a"]
    assert sorted((f["kind"], f["problem"]) for f in r1["failures"]) == [
        ("bad-data", "bad-label"),
        ("bad-data", "unreadable-file"),
    ]
    refused = ["bad-data", "bad-data", "budget-refused"]
    assert r1["aggregated"]
    if _secagg(ws):
        # and the two survivors themselves refuse to help unmask a sum of two
        assert sorted(f["kind"] for f in r2["failures"]) == sorted(
            [*refused, *["partner-error"] * 2]
        )
        assert [f["problem"] for f in r2["failures"] if f["kind"] == "partner-error"] == [
            "secagg-refused"
        ] * 2
        assert not r2["aggregated"]
        assert any("fewer than the threshold 3" in line for line in lines)
        assert r1["global_metrics"]["auc"] > 0.5
    else:
        assert sorted(f["kind"] for f in r2["failures"]) == refused
        assert sorted(t["partner_id"] for t in r2["train"]) == ["crm-c", "shop-a"]
        assert r2["aggregated"] and r2["global_metrics"]["auc"] > 0.5


def test_epsilon_is_the_worst_partner_and_within_each_budget(finished_run) -> None:
    _, summary, _ = finished_run
    for row in summary["rounds"]:
        for t in row["train"]:
            assert 0 < t["epsilon"] <= 4.0
    crm = next(t for t in summary["rounds"][1]["train"] if t["partner_id"] == "crm-c")
    assert "rows-skipped" not in json.dumps(crm)  # skipped rows stay in crm-c's own log


def test_no_value_or_row_number_of_a_rejected_row_reaches_the_platform(finished_run) -> None:
    """(d) Every file on the platform's side and every log record of its process."""
    ws, summary, platform_lines = finished_run
    platform_root = Path(ws.platform_config).parent
    texts = [
        path.read_bytes().decode("utf-8", "replace")
        for path in [*platform_root.rglob("*"), *ws.registry.rglob("*")]
        if path.is_file()
    ]
    texts += platform_lines
    row = re.compile(rf"\brows?\W{{0,3}}{MAGIC_ROW}\b")
    assert texts and any("strict-e" in t for t in texts)  # the refusal itself is recorded
    for text in texts:
        assert MAGIC_VALUE not in text
        assert not row.search(text)
    failure = next(f for f in summary["rounds"][0]["failures"] if f["problem"] == "bad-label")
    assert (failure["column"], failure["file"]) == ("click", "strict-e.parquet")


def test_card_names_only_partners_that_contributed(finished_run) -> None:
    ws, summary, _ = finished_run
    card = json.loads((Path(summary["model_path"]) / "card.json").read_text())
    partners = {p["partner_id"]: p for p in card["privacy"]["partners"]}

    assert set(partners) == {"shop-a", "advertiser-b", "crm-c"}
    assert partners["advertiser-b"]["rounds_contributed"] == 1
    assert partners["shop-a"]["rounds_contributed"] == (1 if _secagg(ws) else 2)
    assert partners["shop-a"]["epsilon"] <= 4.0
    assert card["feature_spec"]["hash"] == load_spec(builtin_spec_path("demo")).spec_hash
    # each partner's unit and method travel through the real Flower path to the card
    assert (partners["crm-c"]["unit_of_privacy"], partners["crm-c"]["max_rows_per_unit"]) == (
        "user",
        4,
    )
    assert partners["shop-a"]["bucket_selection"] == "dp-adafest"
    assert (
        partners["advertiser-b"]["unit_of_privacy"],
        partners["advertiser-b"]["bucket_selection"],
    ) == ("example", "none")


def test_published_model_verifies_and_one_flipped_byte_does_not(finished_run) -> None:
    ws, summary, _ = finished_run
    model_dir = Path(summary["model_path"])
    args = [str(model_dir), "--public-key", str(ws.platform_public_key)]

    assert verify_model_main(args) == 0
    weights = model_dir / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    try:
        assert verify_model_main(args) != 0
    finally:
        blob[len(blob) // 2] ^= 0x01
        weights.write_bytes(bytes(blob))


def test_ledgers_match_and_the_audit_passes(finished_run, tmp_path: Path) -> None:
    from fedctr.federation.demo.auditing import collect_audit_inputs

    ws, _, _ = finished_run
    assert len(read_ledger(ws.partner_dir("shop-a") / "ledger.jsonl").entries) == 2
    assert len(read_ledger(ws.partner_dir("advertiser-b") / "ledger.jsonl").entries) == 1
    assert read_ledger(ws.partner_dir("broken-d") / "ledger.jsonl").entries == ()
    ledgers, keys = collect_audit_inputs(ws, tmp_path / "audit")

    result = audit_directories(ledgers_dir=ledgers, keys_dir=keys, registry_dir=ws.registry)
    assert result.passed, [str(f) for f in result.findings]


def test_the_console_reads_the_round_log_the_platform_wrote(finished_run) -> None:
    """The operator console's view of a real run: the platform's contributors per round,
    each partner's cumulative epsilon within its budget, the refusals counted."""
    from fedctr.server.console.overview import read_run

    ws, summary, _ = finished_run
    view = read_run(ws.runs / "sim-test")
    assert [r.contributors for r in view.rounds] == [len(r["train"]) for r in summary["rounds"]]
    assert all(r.refusals >= 1 for r in view.rounds)  # broken-d and strict-e never contribute
    for points in view.epsilon.values():
        assert all(0 < p.epsilon <= p.budget for p in points)
        assert [p.epsilon for p in points] == sorted(p.epsilon for p in points)
