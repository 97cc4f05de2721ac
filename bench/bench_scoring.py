"""Scoring API throughput and latency against the real uvicorn server on 127.0.0.1.

Load comes from a separate process: ``wrk`` (Debian package ``wrk``) when it is on
PATH, otherwise a Python keep-alive load generator in another process (it saturates
earlier; the table says which was used). Every configuration runs in this one
process, one after the other, so the table's ratios compare like with like.

    .venv/bin/python bench/bench_scoring.py        # deepfm, demo spec, median of 3 x 5 s
    .venv/bin/python bench/bench_scoring.py --model dcnv2 --repeat 1

Configurations (``inference:workers[:route|:ab]``): the naive baseline ``torch:1:route``
(torch inference behind ordinary FastAPI routes, 1 worker), numpy inference behind
the FastAPI routes, numpy inference with the ASGI fast path on 1 and 2 workers, and
two-arm serving (``numpy:2:ab``: a canary at 50%, single requests keyed by 1,024
impression ids in turn, so both arms score and every impression is recorded for
feedback). Batches go as JSON rows and as an Arrow IPC stream (the same rows, as
columns); batches stay on the control arm.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fedctr.models import builtin_spec_path, load_spec  # noqa: E402
from fedctr.privacy.signing import generate_signing_key, save_public_key  # noqa: E402
from fedctr.server.registry import publish_model  # noqa: E402
from fedctr.server.registry.examples import example_card, random_model  # noqa: E402
from fedctr.server.scoring.columnar import ARROW_STREAM as ARROW  # noqa: E402
from tests.support.scoring import (  # noqa: E402
    ServerProcess,
    arrow_body,
    example_row,
    torch_reference,
)

JSON = "application/json"
Body = bytes | list[bytes]  # a list: requests cycle through it


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = float("nan")  # server CPU (all its processes) per request


def group_cpu_seconds(pgid: int) -> float:
    """user+system CPU of every live process in process group ``pgid`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime stime
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(
    url: str, body: Body, *, connections: int, duration: float, tmp: Path, content_type: str
) -> Load:
    bodies = body if isinstance(body, list) else [body]
    (tmp / "body.bin").write_bytes(b"\n".join(bodies))
    script = tmp / "post.lua"
    # Bodies are read once, then each request takes the next (keyed A/B requests go to
    # both arms); pre-formatted so the load generator does no per-request work.
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
        f'local f = assert(io.open("{tmp / "body.bin"}", "rb"))\n'
        'local all = f:read("*all")\nf:close()\n'
        + (
            "wrk.body = all\n"
            if len(bodies) == 1
            else "local reqs, i = {}, 0\n"
            'for line in all:gmatch("[^\\n]+") do reqs[#reqs + 1] = '
            "wrk.format(nil, nil, nil, line) end\n"
            "request = function() i = i % #reqs + 1; return reqs[i] end\n"
        )
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M))
    if "99" not in pct:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return Load(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(pct["50"]),
        p99_ms=_ms(pct["99"]),
        errors=(int(errors.group(1)) if errors else 0) + (1 if socket_errors else 0),
    )


def _py_worker(url: str, body: Body, deadline: float, queue: mp.Queue, content_type: str) -> None:
    lat, errors = [], 0
    bodies = body if isinstance(body, list) else [body]
    with httpx.Client(headers={"content-type": content_type}) as c:
        while time.monotonic() < deadline:
            t = time.perf_counter()
            r = c.post(url, content=bodies[len(lat) % len(bodies)])
            lat.append(time.perf_counter() - t)
            errors += r.status_code != 200
    queue.put((lat, errors))


def run_python_load(
    url: str, body: Body, *, connections: int, duration: float, content_type: str
) -> Load:
    """Fallback load generator: ``connections`` processes with one keep-alive client each."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    deadline = time.monotonic() + 2 + duration
    procs = [
        ctx.Process(target=_py_worker, args=(url, body, deadline, queue, content_type))
        for _ in range(connections)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    lat = np.concatenate([np.array(r[0]) for r in results])
    return Load(
        rps=len(lat) / duration,
        p50_ms=float(np.percentile(lat, 50) * 1e3),
        p99_ms=float(np.percentile(lat, 99) * 1e3),
        errors=sum(r[1] for r in results),
    )


def measure(
    url: str,
    body: Body,
    *,
    connections: int,
    duration: float,
    tmp: Path,
    pgid: int,
    content_type: str = JSON,
) -> Load:
    cpu0 = group_cpu_seconds(pgid)
    if shutil.which("wrk"):
        load = run_wrk(
            url,
            body,
            connections=connections,
            duration=duration,
            tmp=tmp,
            content_type=content_type,
        )
    else:
        load = run_python_load(
            url, body, connections=connections, duration=duration, content_type=content_type
        )
    requests = load.rps * max(1, round(duration))
    load.cpu_us = (group_cpu_seconds(pgid) - cpu0) / max(requests, 1) * 1e6
    return load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deepfm")
    parser.add_argument("--spec", default="demo", help="built-in spec name")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per cell; the median run is reported"
    )
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--configs",
        default="torch:1:route,numpy:1:route,numpy:1,numpy:2,numpy:2:ab",
        help="inference:workers[:route|:ab], comma-separated (route: FastAPI routes, no "
        "fast path; ab: a canary at 50%%, single requests keyed by 1,024 impression ids)",
    )
    args = parser.parse_args(argv)

    spec = load_spec(builtin_spec_path(args.spec))
    tmp = Path(tempfile.mkdtemp(prefix="fedctr-bench-"))
    key = generate_signing_key()
    model = random_model(spec, args.model, seed=1, hidden=(64, 32))
    canary = publish_model(
        registry_dir=tmp / "registry",
        model=random_model(spec, args.model, seed=2, hidden=(64, 32)),
        spec=spec,
        card=example_card(band=(0.001, 0.999)),
        signing_key=key,
    ).version
    publish_model(  # LATEST: the control arm (and the only model without :ab)
        registry_dir=tmp / "registry",
        model=model,
        spec=spec,
        card=example_card(band=(0.001, 0.999)),
        signing_key=key,
    )
    pub = save_public_key(key, tmp / "platform.pub")
    single = json.dumps({"features": example_row(spec, 3)}).encode()
    keyed = [
        json.dumps({"features": example_row(spec, 3), "impression_id": f"imp-{i:05d}"}).encode()
        for i in range(1024)
    ]
    arms: dict[str, str] = {}
    rows = [example_row(spec, i) for i in range(args.batch_rows)]
    batch = json.dumps({"rows": rows}).encode()
    arrow = arrow_body(spec, rows)
    expected = torch_reference(model, spec, rows[:50], personalized=True)
    loader = "wrk" if shutil.which("wrk") else "python (wrk not found)"
    results = {}
    try:
        for config in args.configs.split(","):
            inference, workers, *mode = config.split(":")
            route, ab = "route" in mode, "ab" in mode
            srv = ServerProcess(
                registry=tmp / "registry",
                public_key=pub,
                log=tmp / f"{config}.log",
                workers=int(workers),
                cwd=REPO,
                extra_args=(
                    *(("--no-fast-path",) if route else ()),
                    *(("--canary", canary, "--canary-share", "0.5") if ab else ()),
                    "--inference",
                    inference,
                    "--max-batch-rows",
                    str(args.batch_rows),
                    "--log-level",
                    "info",
                ),
            )
            try:
                srv.wait_ready(workers_ready=int(workers))
                got = httpx.post(srv.url + "/v1/score/batch", json={"rows": rows[:50]}).json()
                got_arrow = httpx.post(
                    srv.url + "/v1/score/batch",
                    content=arrow_body(spec, rows[:50]),
                    headers={"content-type": ARROW},
                ).json()
                diff = float(
                    max(
                        np.max(np.abs(np.array(got["scores"]) - expected)),
                        np.max(np.abs(np.array(got_arrow["scores"]) - expected)),
                    )
                )
                url = srv.url + "/v1/score"

                pgid = srv.proc.pid
                measure(url, single, connections=4, duration=1, tmp=tmp, pgid=pgid)  # warm-up
                bc = int(workers) * 4  # batch connections

                def median(
                    url: str,
                    body: bytes,
                    connections: int,
                    content_type: str = JSON,
                    pgid: int = pgid,
                ) -> Load:
                    # each wrk run opens new connections, and the kernel spreads them over
                    # the workers by a hash: repeat and keep the median run (by req/s)
                    loads = sorted(
                        (
                            measure(
                                url,
                                body,
                                connections=connections,
                                duration=args.duration,
                                tmp=tmp,
                                pgid=pgid,
                                content_type=content_type,
                            )
                            for _ in range(args.repeat)
                        ),
                        key=lambda x: x.rps,
                    )
                    return loads[len(loads) // 2]

                one = keyed if ab else single
                r16 = median(url, one, args.connections)
                r1 = median(url, one, 1)
                if ab:
                    figures = httpx.get(srv.url + "/v1/rollout").json()["arms"]
                    served = {arm: figures[arm]["served"] for arm in ("control", "canary")}
                    arms[config] = (
                        f"{config}: canary served {served['canary']:,} of "
                        f"{sum(served.values()):,} keyed singles "
                        f"({served['canary'] / max(1, sum(served.values())):.1%}; share 50%)"
                    )
                rb = median(url + "/batch", batch, bc)
                ra = median(url + "/batch", arrow, bc, ARROW)
                results[config] = (r16, r1, rb, ra, diff)
                print(f"done {config}", file=sys.stderr)
            finally:
                srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = results.get("torch:1:route")
    print(
        f"\nfedctr scoring API, model {args.model}, spec {args.spec}, load: {loader}, "
        f"median of {args.repeat} runs of {args.duration:g} s per cell, "
        "single = 1 impression/request, "
        f"batch = {args.batch_rows} rows/request as JSON rows or as an Arrow IPC stream "
        f"({len(batch) // 1024} KiB vs {len(arrow) // 1024} KiB), 4 connections per worker"
    )
    head = (
        f"{'config':<14}{'single c' + str(args.connections) + ' req/s':>18}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'c1 p50 ms':>11}{'c1 req/s':>10}{'JSON rows/s':>14}{'Arrow rows/s':>15}"
        f"{'errors':>8}{'max|Δ| vs torch':>17}{'x naive':>9}{'CPU us/req':>12}"
        f"{'us/JSON row':>12}{'us/Arrow row':>13}"
    )
    print(head)
    print("-" * len(head))
    for config, (r16, r1, rb, ra, diff) in results.items():
        ratio = f"{r16.rps / base[0].rps:.1f}x" if base else "-"
        print(
            f"{config:<14}{r16.rps:>18,.0f}{r16.p50_ms:>9.2f}{r16.p99_ms:>9.2f}"
            f"{r1.p50_ms:>11.3f}{r1.rps:>10,.0f}{rb.rps * args.batch_rows:>14,.0f}"
            f"{ra.rps * args.batch_rows:>15,.0f}"
            f"{r16.errors + r1.errors + rb.errors + ra.errors:>8}{diff:>17.1e}{ratio:>9}"
            f"{r16.cpu_us:>12.0f}{rb.cpu_us / args.batch_rows:>12.2f}"
            f"{ra.cpu_us / args.batch_rows:>13.2f}"
        )
    for line in arms.values():
        print(line)
    print(
        f"load average during the run: {os.getloadavg()[0]:.1f} (2 cores). CPU us/req: server "
        "CPU (all worker processes) per single-impression request at "
        f"c{args.connections}; us/JSON row, us/Arrow row: server CPU per batch row."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
