"""The scoring API as a real uvicorn process on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedctr.models import builtin_spec_path, load_spec
from fedctr.privacy.signing import save_public_key
from fedctr.server.registry import publish_model
from fedctr.server.registry.examples import example_card, random_model
from fedctr.server.registry.layout import write_latest
from fedctr.server.scoring.columnar import ARROW_STREAM as ARROW
from tests.support.scoring import (
    ServerProcess,
    arrow_body,
    bad_arrow_cases,
    bad_request_cases,
    example_row,
    torch_reference,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


SPEC = load_spec(builtin_spec_path("demo"))
MAX_ROWS = 4
WIDE_BAND = (0.001, 0.999)


def good_features(i: int = 0) -> dict:
    return example_row(SPEC, i)


def start_server(platform: dict, log: str, *, workers: int = 1) -> ServerProcess:
    return ServerProcess(
        registry=platform["registry"],
        public_key=platform["pub"],
        log=platform["root"] / log,
        workers=workers,
        extra_args=(
            "--poll-interval",
            "0.05",
            "--max-batch-rows",
            str(MAX_ROWS),
            "--log-level",
            "debug",
        ),
        cwd=REPO,
    )


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("serve")
    key = Ed25519PrivateKey.generate()
    model = random_model(SPEC, "deepfm", seed=21)
    v1 = publish_model(
        registry_dir=root / "registry",
        model=model,
        spec=SPEC,
        card=example_card(band=WIDE_BAND),
        signing_key=key,
    )
    pub = save_public_key(key, root / "platform.pub")
    return {
        "root": root,
        "key": key,
        "pub": pub,
        "registry": root / "registry",
        "model": model,
        "v1": v1,
    }


@pytest.fixture(scope="module")
def server(platform) -> Iterator[ServerProcess]:
    srv = start_server(platform, "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_real_server_scores_like_torch(server, platform) -> None:
    """Single, JSON batch and Arrow batch scores over HTTP equal the torch model's."""
    rows = [good_features(i) for i in range(MAX_ROWS)]
    expected = torch_reference(platform["model"], SPEC, rows, personalized=True)
    with httpx.Client(base_url=server.url) as c:
        singles = [c.post("/v1/score", json={"features": r}).json()["score"] for r in rows]
        batch = c.post("/v1/score/batch", json={"rows": rows}).json()["scores"]
        arrow = c.post(
            "/v1/score/batch", content=arrow_body(SPEC, rows), headers={"content-type": ARROW}
        ).json()["scores"]
    np.testing.assert_allclose(singles, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(arrow, expected, rtol=0, atol=1e-5)


def test_real_server_rejects_bad_input_with_4xx(server) -> None:
    """Every bad-input case gets a 4xx from the real server; none is a 5xx."""
    with httpx.Client(base_url=server.url) as c:
        for path, body, field in bad_request_cases(SPEC, max_batch_rows=MAX_ROWS):
            r = c.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, field, r.status_code)
            assert field in r.text, (path, field, r.text)
        for body, field in bad_arrow_cases(SPEC, max_batch_rows=MAX_ROWS):
            r = c.post("/v1/score/batch", content=body, headers={"content-type": ARROW})
            assert r.status_code == 422 and field in r.text, (field, r.status_code, r.text)
        assert c.post("/v1/score", content=b"x" * (70 * 1024 * 1024)).status_code == 413


def test_real_server_logs_no_feature_values(server) -> None:
    """At debug level, neither valid nor invalid requests put feature values in the log."""
    needles = ("seg-3a9f17", "adv-c0ffee", "8675309", "42.4242", "bogus-77ab")
    row = {
        **good_features(),
        "user_segment": needles[0],
        "advertiser": needles[1],
        "ad_id": int(needles[2]),
        "bid_price": float(needles[3]),
    }
    with httpx.Client(base_url=server.url) as c:
        assert c.post("/v1/score", json={"features": row}).status_code == 200
        assert c.post("/v1/score/batch", json={"rows": [row]}).status_code == 200
        assert (
            c.post("/v1/score", json={"features": {**row, "hour": needles[4]}}).status_code == 422
        )
        assert c.post("/v1/score", json={"features": row, needles[4]: 1}).status_code == 422
        c.get("/metrics")
    log = server.log.read_text()
    assert "Application startup complete" in log
    for needle in needles:
        assert needle not in log


def test_schemathesis_fuzz_finds_no_5xx(server) -> None:
    """Property-based requests generated from the service's own OpenAPI: never a 5xx."""
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    result = subprocess.run(
        [
            st,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--max-examples",
            "60",
            "--seed",
            "7",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _install(platform: dict, *, seed: int, tamper: bool) -> str:
    """Publish the next version in a staging copy; install it (optionally tampered)."""
    staging = platform["root"] / f"staging-{seed}"
    shutil.copytree(platform["registry"], staging)
    published = publish_model(
        registry_dir=staging,
        model=random_model(SPEC, "deepfm", seed=seed),
        spec=SPEC,
        card=example_card(band=WIDE_BAND),
        signing_key=platform["key"],
    )
    target = platform["registry"] / "models" / published.version
    shutil.copytree(published.path, target)
    if tamper:
        weights = target / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    write_latest(platform["registry"], published.version)
    return published.version


def test_reload_refuses_tampered_then_swaps_under_load(platform) -> None:
    """Two workers under constant load: a tampered v2 is refused (v1 keeps serving), a good v3
    is swapped in, and not one request fails meanwhile."""
    srv = start_server(platform, "reload.log", workers=2)
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def load() -> None:
        body = json.dumps({"features": good_features(1)})
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/score", content=body)
                    with lock:
                        if r.status_code == 200:
                            outcomes[r.json()["model_version"]] += 1
                        else:
                            errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(repr(exc))

    try:
        srv.wait_ready(workers_ready=2)
        v1 = platform["v1"].version
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: outcomes[v1] > 50, what="load on v1")
        v2 = _install(platform, seed=22, tamper=True)
        wait_for(
            lambda: srv.log.read_text().count(f"refusing model {v2}") >= 2,
            what="both workers refusing the tampered model",
        )
        with lock:
            before = outcomes[v1]
        wait_for(lambda: outcomes[v1] > before + 50, what="v1 still serving")
        v3 = _install(platform, seed=23, tamper=False)
        wait_for(
            lambda: srv.log.read_text().count(f"serving model {v3}") >= 2,
            what="both workers serving v3",
        )
        with lock:
            after = outcomes[v3]
        wait_for(lambda: outcomes[v3] > after + 50, what="load on v3")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
        srv.stop()
    assert errors == []
    assert outcomes[v2] == 0 and outcomes[v1] > 0 and outcomes[v3] > 0
    log = srv.log.read_text()
    assert f"refusing model {v2} (ArtifactTampered)" in log and f"still serving {v1}" in log
