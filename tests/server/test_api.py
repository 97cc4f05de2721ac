"""The scoring API in-process (TestClient, dependency_overrides): contract and refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import HTTPException
from fastapi.testclient import TestClient

from fedctr.models import builtin_spec_path, load_spec
from fedctr.privacy.signing import save_public_key
from fedctr.server.registry import publish_model
from fedctr.server.registry.examples import example_card, random_model
from fedctr.server.registry.layout import write_latest
from fedctr.server.scoring.api import Settings, create_app
from fedctr.server.scoring.api.deps import get_active_model, get_holder
from fedctr.server.scoring.api.fastpath import ScoringFastPath
from fedctr.server.scoring.api.holder import ModelHolder, prepare_model
from fedctr.server.scoring.api.metrics import ServiceMetrics
from fedctr.server.scoring.api.reloader import reload_once
from fedctr.server.scoring.api.serve import _argv, build_serve_parser
from fedctr.server.scoring.columnar import ARROW_STREAM
from tests.support.scoring import (
    arrow_body,
    bad_arrow_cases,
    bad_request_cases,
    example_row,
    torch_reference,
)

SPEC = load_spec(builtin_spec_path("demo"))
MAX_ROWS = 4
WIDE_BAND = (0.001, 0.999)


def good_features(i: int = 0) -> dict:
    return example_row(SPEC, i)


def bad_requests() -> list[tuple[str, str, str]]:
    return bad_request_cases(SPEC, max_batch_rows=MAX_ROWS)


@pytest.fixture
def platform(tmp_path: Path) -> dict:
    """A registry with one published DeepFM (v1) and the platform key pair."""
    key = Ed25519PrivateKey.generate()
    model = random_model(SPEC, "deepfm", seed=11)
    registry = tmp_path / "registry"
    v1 = publish_model(
        registry_dir=registry,
        model=model,
        spec=SPEC,
        card=example_card(band=WIDE_BAND),
        signing_key=key,
    )
    pub = save_public_key(key, tmp_path / "platform.pub")
    return {"key": key, "pub": pub, "registry": registry, "model": model, "v1": v1}


def settings_for(platform: dict, **extra: object) -> Settings:
    return Settings(
        registry=platform["registry"],
        public_key=platform["pub"],
        max_batch_rows=MAX_ROWS,
        max_body_bytes=64 * 1024,
        poll_interval_s=60,
        **extra,
    )


@pytest.fixture
def client(platform: dict):
    with TestClient(create_app(settings_for(platform))) as c:
        yield c


def test_score_equals_the_torch_model(client, platform) -> None:
    """One impression scores like the torch model on the training encoding."""
    rows = [good_features(i) for i in range(6)]
    expected = torch_reference(platform["model"], SPEC, rows, personalized=True)
    for row, want in zip(rows, expected, strict=True):
        r = client.post("/v1/score", json={"features": row, "request_id": "req-1"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["score"] == pytest.approx(float(want), abs=1e-5)
        assert body["model_version"] == platform["v1"].version
        assert body["request_id"] == "req-1" and body["conservative"] is False


def test_batch_equals_the_torch_model(client, platform) -> None:
    """A batch scores every row like the torch model, in order."""
    rows = [good_features(i) for i in range(MAX_ROWS)]
    r = client.post("/v1/score/batch", json={"rows": rows})
    assert r.status_code == 200, r.text
    expected = torch_reference(platform["model"], SPEC, rows, personalized=True)
    np.testing.assert_allclose(r.json()["scores"], expected, rtol=0, atol=1e-5)
    assert r.json()["rows"] == MAX_ROWS


def test_non_personalized_scores_without_user_features(client, platform) -> None:
    """personalized=false ignores user-scope values (they may be omitted) and says so."""
    row = good_features(2)
    context_only = {k: v for k, v in row.items() if k not in ("user_segment", "user_visits_7d")}
    a = client.post("/v1/score", json={"features": row, "personalized": False}).json()
    b = client.post("/v1/score", json={"features": context_only, "personalized": False}).json()
    expected = torch_reference(platform["model"], SPEC, [row], personalized=False)[0]
    assert a["score"] == b["score"] == pytest.approx(float(expected), abs=1e-5)
    assert a["personalized"] is False


@pytest.mark.parametrize(("path", "body", "field"), bad_requests())
def test_bad_input_is_a_4xx_naming_the_field(client, path, body, field) -> None:
    """Unknown, missing, mistyped, non-finite and oversize inputs: 422 naming the field."""
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(field in [str(p) for p in d["loc"]] or field in d["msg"] for d in detail), detail
    assert all(set(d) == {"loc", "msg", "type"} for d in detail)  # values are never echoed


def test_fast_path_and_fastapi_routes_answer_alike(platform) -> None:
    """The ASGI fast path and the documented FastAPI routes give identical answers."""
    bodies = [
        ("/v1/score", json.dumps({"features": good_features(5), "request_id": "r-1"})),
        ("/v1/score/batch", json.dumps({"rows": [good_features(i) for i in range(3)]})),
        *((path, body) for path, body, _ in bad_requests()),
    ]
    arrow_bodies = [
        (
            "/v1/score/batch?personalized=false",
            arrow_body(SPEC, [good_features(i) for i in range(3)]),
        ),
        *(("/v1/score/batch", body) for body, _ in bad_arrow_cases(SPEC, max_batch_rows=MAX_ROWS)),
    ]
    answers = []
    for fast in (True, False):
        with TestClient(create_app(settings_for(platform, fast_path=fast))) as c:
            answers.append(
                [
                    (r.status_code, r.content)
                    for r in (
                        *(
                            c.post(p, content=b, headers={"content-type": "application/json"})
                            for p, b in bodies
                        ),
                        *(c.post(p, content=b, headers=ARROW) for p, b in arrow_bodies),
                    )
                ]
            )
    assert answers[0] == answers[1]


def test_oversize_body_is_413(client) -> None:
    """A body over max_body_bytes is refused before parsing."""
    r = client.post("/v1/score", content=b" " * (65 * 1024))
    assert r.status_code == 413


def test_model_card_has_privacy_provenance(client, platform) -> None:
    """/v1/model returns the verified card with each partner's privacy statement."""
    body = client.get("/v1/model").json()
    assert body["model_version"] == platform["v1"].version
    assert body["card_sha256"] == platform["v1"].card_sha256
    partners = body["card"]["privacy"]["partners"]
    assert {p["partner_id"] for p in partners} == {"partner-0", "partner-1", "partner-2"}
    assert {"epsilon", "delta", "accountant", "unit_of_privacy", "rounds_contributed"} <= set(
        partners[0]
    )
    assert body["circuit_breaker"]["state"] == "closed"
    assert body["card"]["feature_spec"]["spec"]["salt"] == "[redacted]"
    assert SPEC.salt not in json.dumps(body)


def test_health_ready_and_metrics(client, platform) -> None:
    """Liveness, readiness with the version, and Prometheus counters incl. the model version."""
    assert client.get("/v1/health").json() == {"status": "ok"}
    assert client.get("/v1/ready").json()["model_version"] == platform["v1"].version
    client.post("/v1/score", json={"features": good_features()})
    text = client.get("/metrics").text
    assert 'fedctr_http_requests_total{route="/v1/score",status="200"} 1.0' in text
    assert f'fedctr_model_info{{version="{platform["v1"].version}"}} 1.0' in text
    assert "fedctr_http_request_duration_seconds_bucket" in text


def test_circuit_breaker_serves_base_rate_on_nan(client, platform) -> None:
    """A model producing NaN: conservative base-rate scores, flagged, and counted."""
    active = prepare_model(
        platform["registry"],
        platform["key"].public_key(),
        settings_for(platform),
        expected_spec_hash=None,
    )
    active.scorer.kernel.one = lambda *a: float("nan")
    client.app.state.holder.swap(active)
    body = client.post("/v1/score", json={"features": good_features()}).json()
    assert body["conservative"] is True and body["score"] == 0.1  # the card's base rate
    text = client.get("/metrics").text
    assert "fedctr_conservative_rows_total 1.0" in text
    assert "fedctr_circuit_breaker_open 1.0" in text
    assert client.get("/v1/model").json()["circuit_breaker"]["reason"] == "non_finite_output"


def test_routes_read_the_holder_through_dependencies(client) -> None:
    """Readiness and the model card use overridable dependencies (here: an empty holder)."""
    client.app.dependency_overrides[get_holder] = lambda: ModelHolder()

    async def no_model() -> object:
        raise HTTPException(status_code=503, detail="no model")

    client.app.dependency_overrides[get_active_model] = no_model
    try:
        assert client.get("/v1/ready").status_code == 503
        assert client.get("/v1/model").status_code == 503
    finally:
        client.app.dependency_overrides.clear()
    assert client.get("/v1/ready").status_code == 200


def test_not_ready_without_a_model(platform, tmp_path) -> None:
    """With --spec and an empty registry: not ready, scoring is 503, never 500."""
    empty = tmp_path / "empty"
    empty.mkdir()
    s = Settings(registry=empty, public_key=platform["pub"], spec="demo", poll_interval_s=60)
    with TestClient(create_app(s)) as c:
        assert c.get("/v1/ready").status_code == 503
        assert c.post("/v1/score", json={"features": good_features()}).status_code == 503


def test_openapi_documents_every_feature(client) -> None:
    """The OpenAPI request schema is generated from the spec's columns."""
    doc = client.get("/openapi.json").json()
    features = doc["components"]["schemas"]["Features"]
    assert set(features["properties"]) == set(SPEC.column_names)
    assert features["additionalProperties"] is False
    ref = doc["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    assert ref["schema"]["$ref"].endswith("/ScoreRequest")


def _tampered_v2(platform: dict, tmp_path: Path, *, flip: bool = True, spec=SPEC) -> str:
    """Publish v2 in a copy of the registry, then install it (a byte flipped) in the real one."""
    staging = tmp_path / "staging"
    shutil.copytree(platform["registry"], staging)
    model = random_model(spec, "deepfm", seed=12)
    v2 = publish_model(
        registry_dir=staging,
        model=model,
        spec=spec,
        card=example_card(band=WIDE_BAND),
        signing_key=platform["key"],
    )
    target = platform["registry"] / "models" / v2.version
    shutil.copytree(v2.path, target)
    if flip:
        weights = target / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0x40
        weights.write_bytes(bytes(data))
    write_latest(platform["registry"], v2.version)
    return v2.version


def test_reload_refuses_tampered_and_keeps_serving(client, platform, tmp_path, caplog) -> None:
    """A tampered new version is refused with a log line; the old one keeps serving."""
    v2 = _tampered_v2(platform, tmp_path)
    app = client.app
    with caplog.at_level(logging.INFO, logger="fedctr"):
        swapped = reload_once(
            app.state.holder,
            app.state.settings,
            platform["key"].public_key(),
            ServiceMetrics(),
            spec_hash=SPEC.spec_hash,
        )
    assert not swapped
    assert f"refusing model {v2} (ArtifactTampered)" in caplog.text
    assert f"still serving {platform['v1'].version}" in caplog.text
    assert (
        client.post("/v1/score", json={"features": good_features()}).json()["model_version"]
        == platform["v1"].version
    )


def test_reload_refuses_another_spec(client, platform, tmp_path, caplog) -> None:
    """A genuine model trained for another spec is refused (spec hash mismatch)."""
    other = load_spec(builtin_spec_path("criteo_attribution"))
    v2 = _tampered_v2(platform, tmp_path, flip=False, spec=other)
    app = client.app
    with caplog.at_level(logging.INFO, logger="fedctr"):
        assert not reload_once(
            app.state.holder,
            app.state.settings,
            platform["key"].public_key(),
            ServiceMetrics(),
            spec_hash=SPEC.spec_hash,
        )
    assert f"refusing model {v2} (SpecMismatchError)" in caplog.text


def test_reload_swaps_a_good_version(client, platform, tmp_path) -> None:
    """A valid new version is verified, warmed up and served."""
    v2 = _tampered_v2(platform, tmp_path, flip=False)
    app = client.app
    assert reload_once(
        app.state.holder,
        app.state.settings,
        platform["key"].public_key(),
        app.state.metrics,
        spec_hash=SPEC.spec_hash,
    )
    assert client.get("/v1/ready").json()["model_version"] == v2


def test_logs_hold_no_feature_values(client, caplog) -> None:
    """Good and bad requests leave no feature value in any log record."""
    secret = "secret-segment-5f1c"
    row = {**good_features(), "user_segment": secret, "advertiser": "adv-7e3b", "hour": 13.37}
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/score", json={"features": row})
        client.post("/v1/score/batch", json={"rows": [row, row]})
        client.post("/v1/score", json={"features": {**row, "hour": "x-9d2a"}})
        client.post("/v1/score", json={"features": row, "bogus": secret})
    for needle in (secret, "adv-7e3b", "13.37", "x-9d2a"):
        assert needle not in caplog.text


def test_serve_command_line_round_trips() -> None:
    """The re-exec that pins BLAS threads reproduces every serve option."""
    parser = build_serve_parser()
    args = parser.parse_args(
        ["--registry", "reg", "--public-key", "k.pub", "--spec", "demo", "--workers", "2",
         "--no-fast-path", "--inference", "torch", "--poll-interval", "0.2",
         "--canary", "v0002-abc", "--canary-share", "0.2", "--split-key", "user_id",
         "--impression-capacity", "4096", "--alert-webhook", "http://127.0.0.1:9/h",
         "--admin-token-file", "token.txt"]
    )  # fmt: skip
    assert parser.parse_args(_argv(args)) == args


def test_fast_path_refuses_bad_and_oversize_lengths() -> None:
    """The ASGI fast path: 400 for a malformed Content-Length, 413 beyond the limit."""

    class Echo:
        def single(self, body: bytes, path: str) -> tuple[int, bytes]:
            return 200, body

        batch = single

    fast = ScoringFastPath(None, Echo(), {"/v1/score": "single"}, limit=100)
    replies: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        replies.append(message)

    async def call(length: bytes) -> int:
        replies.clear()
        scope = {"type": "http", "method": "POST", "path": "/v1/score",
                 "headers": [(b"content-length", length)]}  # fmt: skip
        await fast(scope, receive, send)
        return replies[0]["status"]

    assert asyncio.run(call(b"x1")) == 400
    assert asyncio.run(call(b"101")) == 413
    assert asyncio.run(call(b"2")) == 200 and replies[1]["body"] == b"{}"


ARROW = {"content-type": ARROW_STREAM}


@pytest.mark.parametrize("personalized", [True, False])
def test_arrow_batch_scores_like_the_json_batch_and_torch(client, platform, personalized) -> None:
    """An Arrow IPC body (columns, nulls included) scores exactly like the same JSON rows."""
    rows = [good_features(i) for i in range(MAX_ROWS)]
    query = "" if personalized else "?personalized=false"
    r = client.post(f"/v1/score/batch{query}", content=arrow_body(SPEC, rows), headers=ARROW)
    assert r.status_code == 200, r.text
    as_json = client.post("/v1/score/batch", json={"rows": rows, "personalized": personalized})
    assert r.json() == as_json.json()
    expected = torch_reference(platform["model"], SPEC, rows, personalized=personalized)
    np.testing.assert_allclose(r.json()["scores"], expected, rtol=0, atol=1e-5)


def test_arrow_batch_accepts_variable_lists_and_dictionary_strings(client, platform) -> None:
    """Embeddings as list<double> and categoricals dictionary-encoded score the same."""
    import pyarrow as pa

    rows = [good_features(i) for i in range(MAX_ROWS)]
    types = {f.name: pa.list_(pa.float64()) for f in SPEC.embedding}
    types[SPEC.categorical[1].name] = pa.dictionary(pa.int32(), pa.string())
    r = client.post("/v1/score/batch", content=arrow_body(SPEC, rows, types=types), headers=ARROW)
    assert r.status_code == 200, r.text
    expected = torch_reference(platform["model"], SPEC, rows, personalized=True)
    np.testing.assert_allclose(r.json()["scores"], expected, rtol=0, atol=1e-5)


def test_arrow_batch_may_leave_out_user_columns_when_not_personalized(client, platform) -> None:
    rows = [good_features(i) for i in range(3)]
    user = {
        f.name for f in (*SPEC.categorical, *SPEC.numeric, *SPEC.embedding) if f.scope == "user"
    }
    context = [{k: v for k, v in r.items() if k not in user} for r in rows]
    r = client.post(
        "/v1/score/batch?personalized=false", content=arrow_body(SPEC, context), headers=ARROW
    )
    assert r.status_code == 200, r.text
    expected = torch_reference(platform["model"], SPEC, rows, personalized=False)
    np.testing.assert_allclose(r.json()["scores"], expected, rtol=0, atol=1e-5)
    refused = client.post("/v1/score/batch", content=arrow_body(SPEC, context), headers=ARROW)
    assert refused.status_code == 422 and "user-scope" in refused.text


@pytest.mark.parametrize(
    ("body", "field"), bad_arrow_cases(SPEC, max_batch_rows=MAX_ROWS), ids=lambda v: str(v)[:30]
)
def test_bad_arrow_body_is_a_422_naming_the_column(client, body, field) -> None:
    """Every columnar rule is enforced with the column's name; values are never echoed."""
    r = client.post("/v1/score/batch", content=body, headers=ARROW)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(field in d["loc"] or field in d["msg"] for d in detail), detail
    assert "xxxxxxxx" not in r.text


def test_arrow_personalized_query_must_be_a_boolean(client) -> None:
    body = arrow_body(SPEC, [good_features(1)])
    r = client.post("/v1/score/batch?personalized=maybe", content=body, headers=ARROW)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "personalized"]
