"""Alerts: each detector fires on an injected anomaly and stays quiet on a replay of
normal traffic (real clicks from the Criteo attribution sample); the alert log
notifies a real webhook once per episode; the shipped Prometheus rules name only
metrics the service exports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from fedctr.server.monitoring import (
    Alert,
    AlertLog,
    ErrorRate,
    PredictionDrift,
    WebhookNotifier,
    Window,
    cpa_spike,
    ctr_drop,
    partner_shortfall,
)
from fedctr.server.scoring.api.monitor import TrafficMonitor, default_detectors
from fedctr.server.scoring.rollout import (
    Arm,
    Board,
    Counter,
    RollbackPolicy,
    Rollout,
    TrafficSplit,
)
from tests.support.webhook import webhook_server

RULES = Path(__file__).resolve().parents[2] / "server" / "monitoring" / "prometheus-rules.yml"
WINDOW = 1000


@pytest.fixture(scope="module")
def real_clicks(shared_data: Path) -> np.ndarray:
    """115,382 real impressions' clicks, in file order (36% CTR)."""
    table = pq.read_table(shared_data / "criteo_attribution_small" / "small_train.parquet")
    return table.column("click").to_numpy().astype(float)


def windows(clicks: np.ndarray, predicted: float) -> list[Window]:
    out = []
    for start in range(0, len(clicks) - WINDOW + 1, WINDOW):
        c = clicks[start : start + WINDOW]
        out.append(
            Window(served=WINDOW, score_sum=predicted * WINDOW, recorded=WINDOW, clicks=c.sum())
        )
    return out


def test_ctr_drop_stays_quiet_on_a_replay_of_real_traffic(real_clicks) -> None:
    """115 windows of 1,000 real impressions each: no alert (the README quotes it)."""
    detector = ctr_drop()
    fired = [a for w in windows(real_clicks, 0.36) if (a := detector.observe(w)) is not None]
    assert detector.baseline == pytest.approx(real_clicks[:5000].mean(), abs=1e-9)
    assert fired == []


def test_ctr_drop_fires_on_an_injected_drop_within_one_window(real_clicks) -> None:
    """The second half of the replay loses half its clicks: the first window after the
    change fires."""
    rng = np.random.default_rng(0)
    clicks = real_clicks.copy()
    half = len(clicks) // 2 // WINDOW * WINDOW
    keep = rng.random(len(clicks) - half) < 0.5
    clicks[half:] = clicks[half:] * keep
    detector = ctr_drop()
    firing = [i for i, w in enumerate(windows(clicks, 0.36)) if detector.observe(w) is not None]
    assert firing and firing[0] == half // WINDOW
    assert all(i >= half // WINDOW for i in firing)


def test_cpa_spike_fires_when_conversions_per_click_fall() -> None:
    rng = np.random.default_rng(1)
    detector = cpa_spike()
    alarms = []
    for i in range(400):
        rate = 0.1 if i < 300 else 0.05  # conversions per click halve: CPA doubles
        clicks = 2000
        conversions = rng.binomial(clicks, rate)
        alert = detector.observe(Window(clicks=clicks, conversions=conversions))
        if alert is not None:
            alarms.append(i)
    assert alarms and min(alarms) == 300 and len(alarms) >= 95


def test_rate_drop_false_alarms_on_a_long_calibrated_replay() -> None:
    """20,000 windows of binomial traffic at a constant rate: 0 alarms (4 sigma and a
    30% drop, both required)."""
    rng = np.random.default_rng(2)
    detector = ctr_drop()
    fired = sum(
        detector.observe(Window(recorded=5000, clicks=rng.binomial(5000, 0.03))) is not None
        for _ in range(20_000)
    )
    assert fired == 0


def test_prediction_drift_and_error_rate() -> None:
    drift = PredictionDrift(0.02, 0.4)
    assert drift.observe(Window(served=1000, score_sum=100)) is None
    alert = drift.observe(Window(served=1000, score_sum=600))
    assert alert is not None and "outside the card's band" in alert.summary
    errors = ErrorRate(0.01)
    assert errors.observe(Window(served=990, errors=5)) is None
    assert errors.observe(Window(served=900, errors=100)) is not None
    assert errors.observe(Window(served=10, errors=10)) is None  # too few to judge


def test_partner_shortfall() -> None:
    assert partner_shortfall("r", 3, 5, 5) is None
    alert = partner_shortfall("r", 3, 2, 5)
    assert alert is not None and "2 of 5" in alert.summary and alert.severity == "warning"
    zero = partner_shortfall("r", 4, 0, 5)
    assert zero is not None and zero.severity == "critical"


@pytest.fixture
def webhook() -> Iterator[ThreadingHTTPServer]:
    with webhook_server() as server:
        yield server


def test_the_webhook_hears_an_alert_once_per_episode(webhook, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"
    notifier = WebhookNotifier(url, service="fedctr-serve")
    log = AlertLog(tmp_path / "alerts.jsonl", notifiers=(notifier,))
    alert = Alert("ctr_drop:canary", "critical", "fell", {"rate": 0.1})
    assert log.window([alert]) == [alert]
    assert log.window([alert]) == []  # still firing: not notified again
    log.window([])
    log.window([alert])  # a new episode
    assert [r["alert"]["name"] for r in webhook.received] == ["ctr_drop:canary"] * 2
    assert webhook.received[0]["service"] == "fedctr-serve"
    assert len(log.recent()) == 3 and notifier.failures == 0


def test_an_unreachable_webhook_is_counted_not_raised(tmp_path: Path) -> None:
    from tests.support.scoring import free_port

    notifier = WebhookNotifier(f"http://127.0.0.1:{free_port()}/", timeout_s=0.5)
    AlertLog(None, notifiers=(notifier,)).window([Alert("x", "warning", "s", {})])
    assert notifier.failures == 1


def test_the_traffic_monitor_reads_board_deltas_per_arm() -> None:
    board = Board.create(None, share=0.5, capacity=1024)
    rollout = Rollout(
        board,
        TrafficSplit(b"k" * 16),
        split_key="impression_id",
        policy=RollbackPolicy(),
        has_canary=True,
    )
    monitor = TrafficMonitor(rollout, AlertLog(), default_detectors((0.02, 0.4)))
    for _ in range(5):  # warm: 10% CTR on both arms
        for arm in Arm:
            board.add(arm, Counter.SERVED, 2000)
            board.add(arm, Counter.SCORE_SUM, 200)
            board.add(arm, Counter.RECORDED, 2000)
            board.add(arm, Counter.CLICKS, 200)
        assert monitor.tick() == []
    board.add(Arm.CANARY, Counter.SERVED, 2000)
    board.add(Arm.CANARY, Counter.SCORE_SUM, 1800)  # mean 0.9: drifted
    board.add(Arm.CANARY, Counter.RECORDED, 2000)
    board.add(Arm.CANARY, Counter.CLICKS, 40)  # CTR 2%
    names = sorted(a.name for a in monitor.tick())
    assert names == ["ctr_drop:canary", "prediction_drift:canary"]


def test_the_prometheus_rules_name_only_exported_metrics(tmp_path: Path) -> None:
    """Every metric in prometheus-rules.yml is one /metrics exports (a rule over a
    misspelt metric would never fire)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from fastapi.testclient import TestClient

    from fedctr.models import builtin_spec_path, load_spec
    from fedctr.privacy.signing import save_public_key
    from fedctr.server.registry import publish_model
    from fedctr.server.registry.examples import example_card, random_model
    from fedctr.server.scoring.api import Settings, create_app
    from tests.support.scoring import example_row

    spec = load_spec(builtin_spec_path("demo"))
    key = Ed25519PrivateKey.generate()
    publish_model(
        registry_dir=tmp_path / "r",
        model=random_model(spec, "lr"),
        spec=spec,
        card=example_card(),
        signing_key=key,
    )
    pub = save_public_key(key, tmp_path / "p.pub")
    with TestClient(create_app(Settings(registry=tmp_path / "r", public_key=pub))) as client:
        client.post("/v1/score", json={"features": example_row(spec, 0)})
        exported = client.get("/metrics").text
    names = set(re.findall(r"^(fedctr_[a-z_]+)", exported, re.M))
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {
        "FedctrCtrDrop", "FedctrCpaSpike", "FedctrPredictionDrift", "FedctrErrorRate"
    }  # fmt: skip
    for rule in rules:
        for metric in re.findall(r"\b(fedctr_[a-z_]+)", rule["expr"]):
            assert metric in names, f"{rule['alert']}: {metric} is not exported"
