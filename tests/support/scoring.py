"""Helpers shared by the scoring tests and ``bench/bench_scoring.py``.

- :func:`example_row`: a plausible raw request row for any spec;
- :func:`torch_reference`: the oracle: the torch model fed the *training-time*
  (pyarrow) encoding, which every served score must match within 1e-5;
- :func:`bad_request_cases`: one malformed body per validation rule;
- :func:`arrow_body` / :func:`bad_arrow_cases`: the same rows as an Arrow IPC
  stream, and one malformed Arrow body per rule;
- :class:`ServerProcess`: ``python -m fedctr.server.scoring.api.serve`` on a free 127.0.0.1 port,
  readiness polled, stopped with its whole process group.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from fedctr.models.encoding import hash_column, transform_numeric
from fedctr.models.spec import FeatureSpec
from fedctr.server.scoring.columnar import MAX_CATEGORY_CHARS


def example_row(spec: FeatureSpec, i: int = 0) -> dict[str, Any]:
    """Row ``i`` of a deterministic stream of requests (some values missing)."""
    row: dict[str, Any] = {}
    for k, f in enumerate(spec.categorical):
        row[f.name] = (
            None if (i + k) % 11 == 0 else (f"{f.name}-{(i * 7 + k) % 50}" if k % 2 else i + k)
        )
    for k, f in enumerate(spec.numeric):
        row[f.name] = None if (i + k) % 9 == 0 else float((i * 3 + k) % 40) / 4
    for k, f in enumerate(spec.embedding):
        row[f.name] = None if (i + k) % 7 == 0 else [math.sin(i + k + j) for j in range(f.dim)]
    return row


def torch_reference(
    model: torch.nn.Module, spec: FeatureSpec, rows: list[dict], *, personalized: bool
) -> np.ndarray:
    """Click probabilities of the torch model on the training-time (pyarrow) encoding."""
    if not personalized:
        user = {
            f.name for f in (*spec.categorical, *spec.numeric, *spec.embedding) if f.scope == "user"
        }
        rows = [{k: (None if k in user else v) for k, v in r.items()} for r in rows]
    n = len(rows)
    x_cat = np.zeros((n, 0), dtype=np.int64)
    if spec.categorical:
        x_cat = np.stack(
            [
                hash_column(
                    pa.array(
                        [None if r.get(f.name) is None else str(r[f.name]) for r in rows],
                        type=pa.string(),
                    ),
                    feature=f,
                    salt=spec.salt,
                )
                for f in spec.categorical
            ],
            axis=1,
        )
    x_num = np.zeros((n, 0), dtype=np.float32)
    if spec.numeric:
        x_num = np.stack(
            [
                transform_numeric(
                    np.array([np.nan if r.get(f.name) is None else r[f.name] for r in rows]),
                    feature=f,
                )
                for f in spec.numeric
            ],
            axis=1,
        )
    x_dense = np.concatenate(
        [np.zeros((n, 0), np.float32)]
        + [
            np.array([r.get(f.name) or [0.0] * f.dim for r in rows], dtype=np.float32)
            for f in spec.embedding
        ],
        axis=1,
    )
    with torch.no_grad():
        return torch.sigmoid(
            model(torch.from_numpy(x_cat), torch.from_numpy(x_num), torch.from_numpy(x_dense))
        ).numpy()


def bad_request_cases(spec: FeatureSpec, *, max_batch_rows: int) -> list[tuple[str, str, str]]:
    """``(path, raw body, field the error must name)``: one per validation rule."""
    ok = example_row(spec, 1)
    ok = {k: (v if v is not None else _present(spec, k)) for k, v in ok.items()}
    cat = spec.categorical[0].name
    num = spec.numeric[0].name if spec.numeric else None
    emb = spec.embedding[0] if spec.embedding else None
    user = next((f.name for f in (*spec.categorical, *spec.numeric) if f.scope == "user"), None)

    def with_(**change: object) -> str:
        return json.dumps({"features": {**ok, **change}})

    def without(name: str) -> str:
        return json.dumps({"features": {k: v for k, v in ok.items() if k != name}})

    cases = [
        ("/v1/score", json.dumps({"features": ok, "extra": 1}), "extra"),
        ("/v1/score", with_(zzz_unknown=1), "zzz_unknown"),
        ("/v1/score", without(cat), cat),
        ("/v1/score", with_(**{cat: 1.5}), cat),
        ("/v1/score", with_(**{cat: 2**70}), cat),
        ("/v1/score", with_(**{cat: "x" * 300}), cat),
        ("/v1/score", with_(**{cat: " " + "x" * MAX_CATEGORY_CHARS}), cat),  # length counts padding
        ("/v1/score", with_(**{cat: ["a"]}), cat),
        ("/v1/score", with_(**{cat: True}), cat),
        ("/v1/score", with_(**{cat: "\ud800"}), "body"),  # a lone surrogate is not text
        ("/v1/score", json.dumps({"features": ok, "personalized": "yes"}), "personalized"),
        ("/v1/score", json.dumps({"features": ok, "request_id": "a b"}), "request_id"),
        ("/v1/score", json.dumps({"features": []}), "features"),
        ("/v1/score", json.dumps({}), "features"),
        ("/v1/score", "{", "body"),
        ("/v1/score", "[]", "body"),
        ("/v1/score", "", "body"),
        ("/v1/score/batch", json.dumps({"rows": [ok] * (max_batch_rows + 1)}), "rows"),
        ("/v1/score/batch", json.dumps({"rows": []}), "rows"),
        ("/v1/score/batch", json.dumps({"rows": [ok, {cat: 1}]}), "rows"),
        ("/v1/score/batch", json.dumps({"rows": [ok], "extra": True}), "extra"),
    ]
    if user is not None:
        cases.append(("/v1/score", without(user), user))
    if num is not None:
        marker = with_(**{num: None}).replace(f'"{num}": null', f'"{num}": @')
        cases += [
            ("/v1/score", with_(**{num: "13"}), num),
            ("/v1/score", with_(**{num: True}), num),
            ("/v1/score", marker.replace("@", "NaN"), num),
            ("/v1/score", marker.replace("@", "Infinity"), num),
            ("/v1/score", marker.replace("@", "-1e999"), num),
        ]
    if emb is not None:
        cases += [
            ("/v1/score", with_(**{emb.name: [0.1] * (emb.dim - 1)}), emb.name),
            ("/v1/score", with_(**{emb.name: [0.1] * (emb.dim - 1) + ["a"]}), emb.name),
        ]
    return cases


def arrow_body(
    spec: FeatureSpec, rows: list[dict[str, Any]], *, types: dict[str, pa.DataType] | None = None
) -> bytes:
    """``rows`` as an Arrow IPC stream, one column per key of the first row.

    Categoricals keep their Python type (a column of strings or of integers; a mixed
    column becomes strings), numerics float64, embeddings ``fixed_size_list<float32>``;
    ``types`` overrides a column's type.
    """
    columns: dict[str, pa.Array] = {}
    dims = {f.name: f.dim for f in spec.embedding}
    cats = {f.name for f in spec.categorical}
    for name in rows[0]:
        values = [r.get(name) for r in rows]
        if types and name in types:
            columns[name] = pa.array(values, type=types[name])
        elif name in dims:
            columns[name] = pa.array(values, type=pa.list_(pa.float32(), dims[name]))
        elif name in cats:
            kinds = {type(v) for v in values if v is not None}
            typ = pa.int64() if kinds <= {int} else pa.string()
            columns[name] = pa.array(
                [v if v is None or typ == pa.int64() else str(v) for v in values], type=typ
            )
        else:
            columns[name] = pa.array(values, type=pa.float64())
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def bad_arrow_cases(spec: FeatureSpec, *, max_batch_rows: int) -> list[tuple[bytes, str]]:
    """``(Arrow body, field the 422 must name)``: one per rule of the columnar path."""
    ok = example_row(spec, 1)
    ok = {k: (v if v is not None else _present(spec, k)) for k, v in ok.items()}
    cat = spec.categorical[0].name
    cases = [
        (b"not an arrow stream", "body"),
        (arrow_body(spec, [{**ok, "zzz_unknown": 1.0}]), "zzz_unknown"),
        (arrow_body(spec, [{k: v for k, v in ok.items() if k != cat}]), cat),
        (arrow_body(spec, [ok] * (max_batch_rows + 1)), "rows"),
        (arrow_body(spec, [{**ok, cat: 1.5}], types={cat: pa.float64()}), cat),
        (arrow_body(spec, [{**ok, cat: "x" * 300}]), cat),
        (arrow_body(spec, [{**ok, cat: " " + "x" * MAX_CATEGORY_CHARS}]), cat),
        (arrow_body(spec, [{**ok, cat: True}], types={cat: pa.bool_()}), cat),
    ]
    if spec.numeric:
        num = spec.numeric[0].name
        cases += [
            (arrow_body(spec, [ok, {**ok, num: math.nan}]), num),
            (arrow_body(spec, [{**ok, num: math.inf}]), num),
            (arrow_body(spec, [{**ok, num: "13"}], types={num: pa.string()}), num),
        ]
    if spec.embedding:
        emb = spec.embedding[0]
        short = pa.list_(pa.float32())
        cases += [
            (
                arrow_body(
                    spec, [{**ok, emb.name: [0.1] * (emb.dim - 1)}], types={emb.name: short}
                ),
                emb.name,
            ),
            (arrow_body(spec, [{**ok, emb.name: [math.nan] * emb.dim}]), emb.name),
            (arrow_body(spec, [{**ok, emb.name: [None] * emb.dim}]), emb.name),
            (
                arrow_body(
                    spec,
                    [{**ok, emb.name: [0.1] * (emb.dim - 1)}],
                    types={emb.name: pa.list_(pa.float32(), emb.dim - 1)},
                ),
                emb.name,
            ),
            (
                arrow_body(
                    spec, [ok, {**ok, emb.name: [math.inf] * emb.dim}], types={emb.name: short}
                ),
                emb.name,
            ),
            (arrow_body(spec, [{**ok, emb.name: 0.5}], types={emb.name: pa.float64()}), emb.name),
        ]
    return cases


def _present(spec: FeatureSpec, name: str) -> Any:
    for f in spec.embedding:
        if f.name == name:
            return [0.5] * f.dim
    return 1.0 if any(f.name == name for f in spec.numeric) else "present"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pipelined_posts(
    port: int, path: str, bodies: list[bytes], *, depth: int = 64
) -> list[tuple[int, bytes]]:
    """POST every body over one keep-alive connection, ``depth`` requests in flight
    (HTTP/1.1 pipelining): a client fast enough that the server, not the test, sets
    the pace. Returns (status, body) in order."""
    replies: list[tuple[int, bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        buffer = b""
        for start in range(0, len(bodies), depth):
            chunk = bodies[start : start + depth]
            sock.sendall(
                b"".join(
                    b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                    for body in chunk
                )
            )
            for _ in chunk:
                while b"\r\n\r\n" not in buffer:
                    buffer += sock.recv(1 << 16)
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                status = int(lines[0].split()[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in lines[1:]
                    if line.lower().startswith(b"content-length:")
                )
                while len(buffer) < length:
                    buffer += sock.recv(1 << 16)
                replies.append((status, buffer[:length]))
                buffer = buffer[length:]
    return replies


class ServerProcess:
    """The scoring service as a real uvicorn process (its own session, output to ``log``)."""

    def __init__(
        self,
        *,
        registry: Path,
        public_key: Path,
        log: Path,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        self._out = open(self.log, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedctr.server.scoring.api.serve",
                "--registry",
                str(registry),
                "--public-key",
                str(public_key),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                *extra_args,
            ],
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def wait_ready(self, timeout: float = 180.0, *, workers_ready: int = 1) -> None:
        """Poll ``/v1/ready`` (and the log, for several workers) until ready; bounded."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                ok = httpx.get(self.url + "/v1/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                ok = False
            # each worker logs this at info level once its model is verified and warm
            if ok and (
                workers_ready <= 1
                or self.log.read_text().count("Application startup complete") >= workers_ready
            ):
                return
            time.sleep(0.05)
        raise TimeoutError(f"server did not become ready in {timeout} s")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 20 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


__all__ = [
    "ServerProcess",
    "bad_request_cases",
    "example_row",
    "free_port",
    "pipelined_posts",
    "torch_reference",
]
