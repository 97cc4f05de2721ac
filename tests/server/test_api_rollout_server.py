"""A/B and canary serving against real uvicorn (two worker processes sharing the
rollout board): the split's ratio on 100k keys, a ramp under load, and the rollback of
a canary whose predictions drift."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedctr.models import builtin_spec_path, load_spec
from fedctr.privacy.signing import save_public_key
from fedctr.server.registry import publish_model
from fedctr.server.registry.examples import example_card, random_model
from fedctr.server.scoring.rollout import Arm, TrafficSplit
from tests.support.scoring import ServerProcess, example_row, pipelined_posts

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SPEC = load_spec(builtin_spec_path("demo"))
SALT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TRUE_CTR = 0.05


def shifted_model(seed: int, logit_shift: float):
    """A random DeepFM whose output logit is moved by ``logit_shift``: mean score
    ~0.05 at -3, ~0.3 at -1 (the same weights otherwise)."""
    model = random_model(SPEC, "deepfm", seed=seed)
    with torch.no_grad():
        model.deep_out.bias += logit_shift
    return model


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> dict:
    """control (LATEST): mean score near the true CTR; canary: the same model with its
    logit moved up by 2, predicting ~5x too many clicks. Both cards' bands are wide,
    so only calibration can catch the canary."""
    root = tmp_path_factory.mktemp("rollout")
    key = Ed25519PrivateKey.generate()
    versions = {}
    for name, shift in (("canary", -1.0), ("control", -3.0)):
        versions[name] = publish_model(
            registry_dir=root / "registry",
            model=shifted_model(5, shift),
            spec=SPEC,
            card=example_card(band=(0.001, 0.999)),
            signing_key=key,
        ).version
    pub = save_public_key(key, root / "platform.pub")
    return {"root": root, "pub": pub, "registry": root / "registry", **versions}


def start(platform: dict, log: str, share: float) -> ServerProcess:
    server = ServerProcess(
        registry=platform["registry"],
        public_key=platform["pub"],
        log=platform["root"] / log,
        workers=2,
        extra_args=("--canary", platform["canary"], "--canary-share", str(share)),
        cwd=REPO,
        env={"FEDCTR_SERVE_SPLIT_SALT": SALT},
    )
    server.wait_ready(workers_ready=2)
    return server


@pytest.fixture
def server(platform, request) -> Iterator[ServerProcess]:
    srv = start(platform, f"{request.node.name}.log", share=0.1)
    try:
        yield srv
    finally:
        srv.stop()


def bodies(keys: list[str]) -> list[bytes]:
    rows = [example_row(SPEC, i) for i in range(16)]
    return [
        json.dumps({"features": rows[i % 16], "impression_id": k}, separators=(",", ":")).encode()
        for i, k in enumerate(keys)
    ]


def test_split_is_deterministic_and_matches_the_ratio_on_100k_keys(server) -> None:
    """Every one of 100k keyed requests lands where the salted hash says (so the split
    is deterministic and the same in both workers), and the canary's share is 10%
    within binomial error (4 sigma)."""
    keys = [f"imp-{i}" for i in range(100_000)]
    replies = pipelined_posts(server.port, "/v1/score", bodies(keys))
    assert {status for status, _ in replies} == {200}
    arms = [json.loads(body)["arm"] for _, body in replies]
    split = TrafficSplit(bytes.fromhex(SALT))
    assert arms == [split.arm(k, 0.1).label for k in keys]
    share = arms.count("canary") / len(arms)
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / len(arms)) ** 0.5
    report = httpx.get(server.url + "/v1/rollout").json()
    assert report["arms"]["canary"]["served"] == arms.count("canary")


def test_ramp_changes_under_load_drop_no_request(server) -> None:
    """Four clients score without pause while the operator ramps 10% -> 50% -> 100%:
    every request is answered 200, and a key once on the canary stays there."""
    stop = threading.Event()
    seen: list[list[tuple[str, str]]] = [[] for _ in range(4)]
    failures: list[str] = []

    def load(n: int) -> None:
        keys = [f"k{n}-{i}" for i in range(64)]
        payload = bodies(keys)
        while not stop.is_set():
            for status, body in pipelined_posts(server.port, "/v1/score", payload, depth=16):
                if status != 200:
                    failures.append(f"{status} {body[:200]!r}")
                else:
                    seen[n].append(("?", json.loads(body)["arm"]))
            seen[n].append(("round", ""))

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for share in (0.5, 1.0):
            while sum(len(s) for s in seen) < 2000 * (1 + int(share == 1.0)):
                stop.wait(0.01)
            r = httpx.put(server.url + "/v1/rollout/share", json={"canary_share": share})
            assert r.status_code == 200, r.text
        total = sum(len(s) for s in seen)
        while sum(len(s) for s in seen) < total + 2000:
            stop.wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert failures == []
    for n in range(4):  # per key: control ... control canary ... canary, never back
        rounds: list[list[str]] = [[]]
        for kind, arm in seen[n]:
            if kind == "round":
                rounds.append([])
            else:
                rounds[-1].append(arm)
        full = [r for r in rounds if len(r) == 64]
        for key in range(64):
            history = [r[key] for r in full]
            first = history.index("canary") if "canary" in history else len(history)
            assert set(history[first:]) <= {"canary"}
        assert set(full[-1]) == {"canary"}  # at 100% every key is on the canary


def test_a_canary_whose_predictions_drift_is_rolled_back(platform) -> None:
    """Clicks arrive at the true rate (5%) for both arms; the canary predicts ~5x
    that. Half the traffic on it, clicks posted back after each batch: it is rolled
    back for calibration within 1,000 requests (README: ~30 expected clicks at a
    ~0.27 mean score is ~110 canary impressions, then the 3-sigma interval must clear
    the band), and everything after goes to control."""
    server = start(platform, "drift.log", share=0.5)
    rng = np.random.default_rng(7)
    try:
        arms: list[str] = []
        for batch in range(20):
            keys = [f"d{batch}-{i}" for i in range(50)]
            replies = pipelined_posts(server.port, "/v1/score", bodies(keys))
            arms += [json.loads(body)["arm"] for _, body in replies]
            clicked = [k for k in keys if rng.random() < TRUE_CTR]
            feedback = [json.dumps({"impression_id": k, "clicked": True}).encode() for k in clicked]
            assert all(s == 200 for s, _ in pipelined_posts(server.port, "/v1/feedback", feedback))
            if httpx.get(server.url + "/v1/rollout").json()["rolled_back"]:
                break
        report = httpx.get(server.url + "/v1/rollout").json()
        after = pipelined_posts(
            server.port, "/v1/score", bodies([f"after-{i}" for i in range(200)])
        )
        metrics = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    assert report["rolled_back"] == "calibration"
    assert len(arms) <= 1000
    canary = report["arms"]["canary"]
    assert canary["calibration_ci95"][1] < 0.8
    assert {json.loads(b)["arm"] for _, b in after} == {Arm.CONTROL.label}
    assert "fedctr_canary_rolled_back 1.0" in metrics


def test_alerts_stay_quiet_on_normal_traffic_and_fire_on_a_ctr_drop(platform, tmp_path) -> None:
    """Real uvicorn with 0.5 s alert windows and a webhook: 5 s of traffic at the true
    click rate raise nothing; when clicks fall to a fifth, the webhook hears
    ``ctr_drop`` for the arm within a few windows."""
    from tests.support.webhook import webhook_server

    with webhook_server() as hook:
        server = ServerProcess(
            registry=platform["registry"],
            public_key=platform["pub"],
            log=platform["root"] / "alerts.log",
            workers=2,
            extra_args=(
                "--alert-webhook",
                f"http://127.0.0.1:{hook.server_address[1]}/hook",
            ),
            cwd=REPO,
            env={"FEDCTR_SERVE_SPLIT_SALT": SALT, "FEDCTR_SERVE_ALERT_INTERVAL_S": "0.5"},
        )
        rng = np.random.default_rng(11)
        try:
            server.wait_ready(workers_ready=2)

            def traffic(seconds: float, ctr: float, tag: str) -> None:
                deadline = time.monotonic() + seconds
                batch = 0
                while time.monotonic() < deadline:
                    keys = [f"{tag}{batch}-{i}" for i in range(200)]
                    pipelined_posts(server.port, "/v1/score", bodies(keys))
                    clicks = [k for k in keys if rng.random() < ctr]
                    feedback = [json.dumps({"impression_id": k, "clicked": True}).encode()
                                for k in clicks]  # fmt: skip
                    pipelined_posts(server.port, "/v1/feedback", feedback)
                    batch += 1

            traffic(5.0, 0.3, "n")
            quiet = list(hook.received)
            traffic(3.0, 0.06, "d")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not hook.received[len(quiet) :]:
                time.sleep(0.05)
            listed = httpx.get(server.url + "/v1/alerts").json()["alerts"]
        finally:
            server.stop()
    assert quiet == []
    fired = {r["alert"]["name"] for r in hook.received}
    assert "ctr_drop:control" in fired
    assert any(a["name"] == "ctr_drop:control" for a in listed)
