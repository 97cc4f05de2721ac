"""The demo's scoring step: start the real scoring service, score impressions over HTTP.

The service process gets only the registry and the platform's public key; the
impressions are rows of the platform's evaluation file, sent feature by feature
as a caller would.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from fedctr.federation.demo.datasets import FederationData
from fedctr.federation.workspace import Workspace
from fedctr.models import FeatureSpec
from fedctr.privacy.card import ModelCard

API = "/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def impressions(path: Path, spec: FeatureSpec, limit: int) -> list[dict[str, Any]]:
    """Raw feature dicts of the first ``limit`` rows of a Parquet/CSV file."""
    if path.suffix == ".parquet":
        table = pq.read_table(path, columns=list(spec.column_names)).slice(0, limit)
    else:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path).select(list(spec.column_names)).slice(0, limit)
    rows = table.to_pylist()
    for row in rows:
        for f in spec.numeric:
            v = row[f.name]
            row[f.name] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
        for f in spec.embedding:
            v = row[f.name]
            if isinstance(v, str):
                row[f.name] = [float(t) for t in v.split()]
    return rows


def _request(url: str, payload: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll the readiness endpoint until a verified model is loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scoring service exited with code {proc.returncode}")
        try:
            if _request(base + API + "/ready", timeout=1).get("ready"):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError("scoring service did not become ready")


def start_service(registry: Path, public_key: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "fedctr.federation.cli",
        "serve",
        "--registry",
        str(registry),
        "--public-key",
        str(public_key),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ)
        )


def stop_service(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def score_with_live_server(ws: Workspace, data: FederationData, console: Console) -> int:
    """Start ``fedctr serve``, score single impressions and a batch, stop it."""
    assert data.eval_data is not None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = ws.root / "scoring-service.log"
    proc = start_service(ws.registry, ws.platform_public_key, port, log)
    try:
        wait_ready(base, proc)
        rows = impressions(data.eval_data, data.spec, 200)
        latencies = []
        first = None
        for row in rows[:100]:
            t0 = time.perf_counter()
            out = _request(base + API + "/score", {"features": row, "personalized": True})
            latencies.append((time.perf_counter() - t0) * 1000)
            first = first or out
        batch = _request(base + API + "/score/batch", {"rows": rows, "personalized": True})
        card = ModelCard.from_json(_request(base + API + "/model")["card"])
        non_personal = _request(base + API + "/score", {"features": rows[0], "personalized": False})
    except Exception as exc:
        console.print(f"[red]scoring step failed: {exc}; service log: {log}")
        return 1
    finally:
        stop_service(proc)
    console.print(
        f"[bold green]scored[/] via HTTP on 127.0.0.1:{port}: model {first['model_version']}, "
        f"first impression pCTR {first['score']:.4f} "
        f"(non-personalised {non_personal['score']:.4f}), "
        f"batch of {batch['rows']} rows, single-request p50 {statistics.median(latencies):.2f} ms "
        f"(client-side, Python urllib); card lists {len(card.partners)} "
        "partners' privacy statements"
    )
    return 0


__all__ = [
    "free_port",
    "impressions",
    "score_with_live_server",
    "start_service",
    "stop_service",
    "wait_ready",
]
