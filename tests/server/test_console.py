"""The operator console: what it reads (runs, ledgered epsilon, verified versions,
serving arms), that the page shows exactly the API's numbers, who may open it, and,
in headless Chromium against real uvicorn, that a person sees the plots and numbers."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from fedctr.models import builtin_spec_path, load_spec
from fedctr.privacy.signing import save_public_key
from fedctr.server.console import ConsoleConfig, ConsoleConfigError, create_console
from fedctr.server.console.plots import PALETTE
from fedctr.server.registry import publish_model
from fedctr.server.registry.examples import example_card, random_model
from fedctr.server.registry.layout import MODELS_DIR
from tests.support.browser import chromium_or_skip, dump_dom, near, read_png_rows, screenshot
from tests.support.scoring import ServerProcess, example_row, free_port

SPEC = load_spec(builtin_spec_path("demo"))
REPO = Path(__file__).resolve().parents[2]
BUDGETS = {"shop-a": 4.0, "advertiser-b": 8.0, "crm-c": 4.0}


def _train(pid: str, eps: float) -> dict:
    """A round-log train record as the platform writes it (asdict of the record)."""
    return {
        "partner_id": pid,
        "node_id": hash(pid) % 1000,
        "epsilon": eps,
        "delta": 1e-5,
        "reply": {"partner_id": pid, "epsilon": eps, "budget": {"epsilon": BUDGETS[pid]}},
    }


def write_run(runs: Path, run_id: str) -> None:
    """Three rounds; in round 2 crm-c refuses (budget), in round 3 only shop-a comes."""
    rounds = [
        (1, ["shop-a", "advertiser-b", "crm-c"], [], 0.61),
        (2, ["shop-a", "advertiser-b"], [{"node_id": 7, "kind": "budget", "problem": "x"}], 0.66),
        (3, ["shop-a"], [], 0.68),
    ]
    lines = []
    for rnd, who, failures, auc in rounds:
        lines.append(
            {
                "round": rnd,
                "train": [_train(p, round(BUDGETS[p] * rnd / 4, 3)) for p in who],
                "rejected": [],
                "failures": failures,
                "aggregated": True,
                "global_metrics": {"auc": auc, "logloss": 0.5 - auc / 10},
            }
        )
    (runs / run_id).mkdir(parents=True)
    (runs / run_id / "rounds.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.fixture
def platform(tmp_path: Path) -> dict:
    key = Ed25519PrivateKey.generate()
    registry = tmp_path / "registry"
    versions = [
        publish_model(
            registry_dir=registry,
            model=random_model(SPEC, "deepfm", seed=s),
            spec=SPEC,
            card=example_card(band=(0.001, 0.999), run_id=f"run-{s}"),
            signing_key=key,
        ).version
        for s in (1, 2)
    ]
    weights = next((registry / MODELS_DIR / versions[0]).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # v1 tampered after publishing
    weights.write_bytes(bytes(data))
    write_run(tmp_path / "runs", "run-2")
    pub = save_public_key(key, tmp_path / "platform.pub")
    return {"root": tmp_path, "registry": registry, "pub": pub, "versions": versions}


def config_for(platform: dict, **extra: object) -> ConsoleConfig:
    return ConsoleConfig(
        runs_dir=platform["root"] / "runs",
        registry=platform["registry"],
        public_key=platform["pub"],
        **extra,
    )


def shown(page: str) -> dict[str, str]:
    """Every ``data-k`` cell of the page: key -> the text a person reads."""
    return dict(re.findall(r'data-k="([^"]+)"[^>]*>([^<]*)<', page))


def api_value(api: dict, key: str) -> float | int | None:
    """The API's number for a ``data-k`` key."""
    parts = key.split(":")
    if parts[0] == "run":
        run = next(r for r in api["runs"] if r["run_id"] == parts[1])
        if parts[2] == "round":
            return next(r for r in run["rounds"] if r["round"] == int(parts[3]))[parts[4]]
        points = run["epsilon"][parts[3]]
        return points[-1][parts[4]]
    if parts[0] == "version":
        v = next(v for v in api["versions"] if v["version"] == parts[1])
        return v[parts[2]]
    if parts[0] == "arm":
        return api["serving"]["arms"][parts[1]][parts[2]]
    if key == "canary_share":
        return api["serving"]["canary_share"]
    raise KeyError(key)


def assert_page_matches_api(page: str, api: dict) -> int:
    cells = shown(page)
    assert cells
    for key, text in cells.items():
        want = api_value(api, key)
        if isinstance(want, str):
            assert text.strip() == want, key
        elif want is None or (isinstance(want, float) and not math.isfinite(want)):
            assert text.strip() == "–", key
        else:
            assert float(text) == pytest.approx(want, abs=6e-4), key
    return len(cells)


def test_the_overview_reads_runs_epsilon_versions_and_signatures(platform) -> None:
    with TestClient(create_console(config_for(platform))) as client:
        api = client.get("/api/overview").json()
    (run,) = api["runs"]
    assert [r["contributors"] for r in run["rounds"]] == [3, 2, 1]
    assert [r["refusals"] for r in run["rounds"]] == [0, 1, 0]
    assert [p["epsilon"] for p in run["epsilon"]["shop-a"]] == [1.0, 2.0, 3.0]
    assert {p["budget"] for p in run["epsilon"]["advertiser-b"]} == {8.0}
    # fewer partners than the run's three in rounds 2 and 3: alerts
    assert [a["figures"]["contributed"] for a in run["alerts"]] == [2, 1]
    tampered, good = sorted(api["versions"], key=lambda v: v["version"])
    assert good["signature"] == "verified" and good["latest"] and good["run_id"] == "run-2"
    assert tampered["signature"].startswith("FAILED")
    assert api["serving"] is None and api["serving_error"] is None


def test_the_page_shows_exactly_the_apis_numbers_and_both_plots(platform) -> None:
    with TestClient(create_console(config_for(platform))) as client:
        page = client.get("/").text
        api = client.get("/api/overview").json()
    assert assert_page_matches_api(page, api) >= 20
    assert 'data-testid="auc-plot-run-2"' in page and 'data-testid="epsilon-plot-run-2"' in page
    assert 'data-series="shop-a" data-points="1:1 2:2 3:3"' in page
    assert 'data-series="budget ε=8"' in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")


def test_a_scoring_service_that_is_down_is_said_not_fatal(platform) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with TestClient(create_console(config_for(platform, scoring_url=url))) as client:
        api = client.get("/api/overview").json()
        page = client.get("/").text
    assert api["serving"] is None and "not reachable" in api["serving_error"]
    assert 'data-testid="serving-missing"' in page


def test_a_token_guards_the_console_when_configured(platform) -> None:
    with TestClient(create_console(config_for(platform, token="t0k"))) as client:
        assert client.get("/").status_code == 401
        assert client.get("/api/overview?token=wrong").status_code == 401
        assert client.get("/api/overview?token=t0k").status_code == 200
        assert client.get("/", headers={"Authorization": "Bearer t0k"}).status_code == 200


def test_the_console_does_not_listen_beyond_loopback_without_a_token(platform) -> None:
    config_for(platform).check_bind("127.0.0.1")
    config_for(platform).check_bind("::1")
    with pytest.raises(ConsoleConfigError, match="without a token"):
        config_for(platform).check_bind("0.0.0.0")
    config_for(platform, token="t").check_bind("0.0.0.0")


@pytest.mark.slow
def test_console_in_headless_chromium_shows_plots_and_the_apis_numbers(platform) -> None:
    """Real uvicorn for both: the scoring service (a canary at 50%, keyed traffic and
    clicks posted back) and ``fedctr console``; Chromium renders the page. The
    screenshot has the plots' lines in their colours; the DOM Chromium built shows
    every number the API returns for it."""
    chromium = chromium_or_skip()
    root, versions = platform["root"], platform["versions"]  # v1 is tampered: v2 serves
    scoring = ServerProcess(
        registry=platform["registry"],
        public_key=platform["pub"],
        log=root / "serve.log",
        workers=1,
        extra_args=("--canary", versions[1], "--canary-share", "0.5"),
        cwd=REPO,
    )
    port = free_port()
    console_log = open(root / "console.log", "wb")  # noqa: SIM115  (closed below)
    console = subprocess.Popen(
        [sys.executable, "-m", "fedctr.federation.cli", "console", "--runs", str(root / "runs"),
         "--registry", str(platform["registry"]), "--public-key", str(platform["pub"]),
         "--scoring-url", scoring.url, "--port", str(port)],
        stdout=console_log, stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        scoring.wait_ready()
        for i in range(200):
            body = {"features": example_row(SPEC, i % 16), "impression_id": f"imp-{i}"}
            assert httpx.post(scoring.url + "/v1/score", json=body).status_code == 200
            if i % 7 == 0:
                fb = {"impression_id": f"imp-{i}", "clicked": True}
                assert httpx.post(scoring.url + "/v1/feedback", json=fb).json()["joined"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/api/overview", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        api = httpx.get(url + "/api/overview", timeout=30).json()
        dom = dump_dom(chromium, url + "/", root / "profile-dom")
        png = root / "console.png"
        screenshot(chromium, url + "/", png, root / "profile-png", size="1280,2600")
    finally:
        console.terminate()
        console.wait(30)
        console_log.close()
        scoring.stop()
    assert (
        api["serving"]["arms"]["control"]["served"] + api["serving"]["arms"]["canary"]["served"]
        == 200
    )
    assert assert_page_matches_api(dom, api) >= 35  # rounds, partners, versions, both arms
    for testid in ("auc-plot-run-2", "epsilon-plot-run-2", "arms", "versions", "alerts"):
        assert f'data-testid="{testid}"' in dom
    pixels = read_png_rows(png, 2600)
    for color in PALETTE[:2]:  # the AUC line and shop-a's, advertiser-b's epsilon lines
        assert near(pixels, color, 30).sum() > 300, color
    assert near(pixels, "#555555", 10).sum() > 100  # the dashed budget lines
    assert np.isfinite(pixels).all()


def test_partner_shortfall_alerts_reach_the_webhook_once_per_round(platform) -> None:
    """Rounds 2 and 3 aggregated fewer partners than the run's three: one webhook post
    each, not repeated at the next check; a new short round is posted when it lands."""
    from fedctr.server.console.app import FederationAlerts
    from fedctr.server.monitoring import WebhookNotifier
    from tests.support.webhook import webhook_server

    with webhook_server() as hook:
        url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
        alerts = FederationAlerts(config_for(platform), WebhookNotifier(url))
        assert [a.figures["round"] for a in alerts.check()] == [2, 3]
        assert alerts.check() == []
        log = platform["root"] / "runs" / "run-2" / "rounds.jsonl"
        extra = {"round": 4, "train": [_train("crm-c", 4.0)], "failures": [], "aggregated": True}
        log.write_text(log.read_text() + json.dumps(extra) + "\n")
        assert [a.figures["round"] for a in alerts.check()] == [4]
    assert [r["alert"]["figures"]["round"] for r in hook.received] == [2, 3, 4]
    assert all(r["alert"]["name"] == "partner_shortfall" for r in hook.received)
