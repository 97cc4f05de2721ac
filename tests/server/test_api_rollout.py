"""A/B and canary serving in-process (TestClient): routing, feedback, ramp, rollback,
per-arm metrics, and who may change the rollout. Real uvicorn: test_api_rollout_server."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from fedctr.models import builtin_spec_path, load_spec
from fedctr.privacy.signing import save_public_key
from fedctr.server.registry import publish_model
from fedctr.server.registry.examples import example_card, random_model
from fedctr.server.scoring.api import Settings, create_app
from fedctr.server.scoring.rollout import Arm, TrafficSplit
from tests.support.scoring import example_row

SPEC = load_spec(builtin_spec_path("demo"))
SALT = "00112233445566778899aabbccddeeff"
TOKEN = "operator-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WIDE = (0.0005, 0.9995)


@pytest.fixture
def registry(tmp_path: Path) -> dict:
    """v1 (the canary: its card's band is narrow, so its breaker can trip) and v2,
    which LATEST names (control)."""
    key = Ed25519PrivateKey.generate()
    registry = tmp_path / "registry"
    # a random DeepFM scores ~0.5: the "narrow" canary's band excludes it
    bands = {"narrow": (0.99, 0.999), "canary": WIDE, "control": WIDE}
    versions = {
        name: publish_model(
            registry_dir=registry,
            model=random_model(SPEC, "deepfm", seed=seed),
            spec=SPEC,
            card=example_card(band=bands[name]),
            signing_key=key,
        ).version
        for seed, name in enumerate(("narrow", "canary", "control"))  # control last: LATEST
    }
    pub = save_public_key(key, tmp_path / "platform.pub")
    return {"registry": registry, "pub": pub, **versions}


def app_for(registry: dict, **extra: object):
    settings = Settings(
        registry=registry["registry"],
        public_key=registry["pub"],
        poll_interval_s=60,
        split_salt=SALT,
        **{"canary": registry["canary"], "canary_share": 0.3, "admin_token": TOKEN, **extra},
    )
    return create_app(settings)


def score(client: TestClient, i: int, **ids: str) -> dict:
    r = client.post("/v1/score", json={"features": example_row(SPEC, i), **ids})
    assert r.status_code == 200, r.text
    return r.json()


def test_each_impression_goes_to_the_arm_its_hashed_id_names(registry) -> None:
    split = TrafficSplit(bytes.fromhex(SALT))
    with TestClient(app_for(registry)) as client:
        for i in range(60):
            body = score(client, i, impression_id=f"imp-{i}")
            want = split.arm(f"imp-{i}", 0.3)
            assert body["arm"] == want.label
            assert body["model_version"] == registry[want.label]
        assert score(client, 0)["arm"] == "control"  # no key: control
        arms = client.get("/v1/rollout").json()["arms"]
    assert arms["canary"]["served"] + arms["control"]["served"] == 61
    assert arms["canary"]["model_version"] == registry["canary"]


def test_split_by_user_keeps_a_user_on_one_arm(registry) -> None:
    with TestClient(app_for(registry, split_key="user_id", canary_share=0.5)) as client:
        for user in ("u-1", "u-2", "u-3", "u-4"):
            arms = {score(client, i, user_id=user, impression_id=f"{user}-{i}")["arm"]
                    for i in range(8)}  # fmt: skip
            assert len(arms) == 1


def test_feedback_joins_by_impression_id_and_feeds_the_arm_figures(registry) -> None:
    with TestClient(app_for(registry, canary_share=0.5)) as client:
        served = {f"imp-{i}": score(client, i, impression_id=f"imp-{i}") for i in range(40)}
        for imp, body in list(served.items())[:10]:
            r = client.post("/v1/feedback", json={"impression_id": imp, "clicked": True},
                            headers=AUTH)  # fmt: skip
            assert r.status_code == 200 and r.json() == {"joined": True, "arm": body["arm"]}
        unknown = client.post("/v1/feedback", json={"impression_id": "never"}, headers=AUTH)
        assert unknown.json() == {"joined": False, "arm": None}
        report = client.get("/v1/rollout").json()
        metrics = client.get("/metrics").text
    clicks = {arm: sum(b["arm"] == arm for b in list(served.values())[:10])
              for arm in ("control", "canary")}  # fmt: skip
    for arm in ("control", "canary"):
        figures = report["arms"][arm]
        assert figures["clicks"] == clicks[arm]
        assert figures["recorded"] == sum(b["arm"] == arm for b in served.values())
        expected = sum(b["score"] for b in served.values() if b["arm"] == arm)
        assert figures["expected_clicks"] == pytest.approx(expected, rel=1e-6)
        low, high = figures["ctr_ci95"]
        assert low <= figures["ctr"] <= high
        assert f'fedctr_arm_clicks_total{{arm="{arm}"}} {float(clicks[arm])}' in metrics


def test_the_ramp_changes_at_runtime_and_only_for_the_operator(registry) -> None:
    with TestClient(app_for(registry, canary_share=0.0)) as client:
        assert {score(client, i, impression_id=f"i{i}")["arm"] for i in range(30)} == {"control"}
        assert client.put("/v1/rollout/share", json={"canary_share": 1.0}).status_code == 401
        bad = client.put("/v1/rollout/share", json={"canary_share": 2}, headers=AUTH)
        assert bad.status_code == 422
        r = client.put("/v1/rollout/share", json={"canary_share": 1.0}, headers=AUTH)
        assert r.status_code == 200 and r.json()["canary_share"] == 1.0
        assert {score(client, i, impression_id=f"i{i}")["arm"] for i in range(30)} == {"canary"}
        assert client.post("/v1/rollout/rollback", headers=AUTH).json()["rolled_back"] == "operator"
        assert {score(client, i, impression_id=f"i{i}")["arm"] for i in range(30)} == {"control"}
        again = client.put("/v1/rollout/share", json={"canary_share": 0.5}, headers=AUTH)
        assert again.status_code == 409 and "rolled back" in again.json()["detail"]


def test_without_a_token_only_loopback_may_change_the_rollout(registry) -> None:
    settings_free = app_for(registry, admin_token=None)
    with TestClient(settings_free) as client:  # TestClient's peer is "testclient"
        r = client.put("/v1/rollout/share", json={"canary_share": 0.5})
        assert r.status_code == 403 and "loopback" in r.json()["detail"]
        assert client.post("/v1/feedback", json={"impression_id": "x"}).status_code == 403
        assert client.get("/v1/rollout").status_code == 200  # reading is open


def test_a_canary_whose_breaker_trips_is_rolled_back(registry) -> None:
    """A canary's mean prediction outside its card's band trips its breaker after
    breaker_min_samples canary requests; the rollout then sends everyone to control."""
    app = app_for(
        registry,
        canary=registry["narrow"],
        canary_share=1.0,
        breaker_window=20,
        breaker_min_samples=20,
    )
    with TestClient(app) as client:
        arms = [score(client, i, impression_id=f"i{i}")["arm"] for i in range(60)]
        report = client.get("/v1/rollout").json()
    assert report["rolled_back"] == "breaker"
    switched = arms.index("control")
    assert set(arms[:switched]) == {"canary"} and set(arms[switched:]) == {"control"}
    assert switched <= 21


def test_a_canary_that_is_not_in_the_registry_stops_the_start(registry) -> None:
    from fedctr.server.scoring.api.main import ServeConfigError

    with pytest.raises(ServeConfigError, match="cannot load canary v9999"):
        app_for(registry, canary="v9999-000000000000")


def test_batches_and_unkeyed_requests_stay_on_control(registry) -> None:
    with TestClient(app_for(registry, canary_share=1.0)) as client:
        rows = [example_row(SPEC, i) for i in range(3)]
        r = client.post("/v1/score/batch", json={"rows": rows})
        assert r.json()["model_version"] == registry["control"]
    assert Arm.CONTROL.label == "control"
