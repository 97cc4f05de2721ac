"""Serving soak: a steady load for minutes while models are hot-reloaded under it.

The real scoring service (uvicorn, 1 worker, numpy fast path) serves a signed model on
127.0.0.1. A load generator in another process first finds the highest rate it can
sustain against it (closed loop, 16 requests in flight, 15 s), then sends requests
*open loop* at ``--fraction`` (default 80%) of that rate for ``--minutes`` (default
10): each request has a scheduled send time, and its latency is counted from then,
so a stall shows up as latency instead of silently lowering the rate (no coordinated
omission). Every ``--reload-every`` seconds (default 30) a newly trained-looking model
is signed into the registry and the service swaps it in; once, half way, the new
version's weights are altered after signing, and the service must refuse it and keep
serving the model before it.

    .venv/bin/python bench/bench_soak.py                 # 10 min at 80%, reload every 30 s
    .venv/bin/python bench/bench_soak.py --minutes 1     # a short check

Printed: totals (requests, failures, reloads accepted and refused) and, per minute,
the achieved rate and p50/p99/max latency.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fedctr.models import builtin_spec_path, load_spec  # noqa: E402
from fedctr.privacy.card import WEIGHTS_FILE  # noqa: E402
from fedctr.privacy.signing import generate_signing_key, save_public_key  # noqa: E402
from fedctr.server.registry import publish_model  # noqa: E402
from fedctr.server.registry.examples import example_card, random_model  # noqa: E402
from fedctr.server.registry.layout import MODELS_DIR, write_latest  # noqa: E402
from tests.support.scoring import ServerProcess, example_row  # noqa: E402

PROBE_S = 15.0
PROBE_IN_FLIGHT = 16
POOL = 64  # the soak's keep-alive connections


# ---- load generator (its own process) -------------------------------------------
class _Connection:
    """One keep-alive HTTP/1.1 connection with hand-written requests: a Python client
    library costs ~1-2 ms of CPU per request, which would measure the client, not the
    service."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> _Connection:
        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, request: bytes) -> bool:
        """True for a 200 whose body carries a score."""
        self.writer.write(request)
        status = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return status.split(b" ", 2)[1:2] == [b"200"] and b'"score"' in body


def _request(url: str, body: bytes) -> bytes:
    address, _, path = url.split("//", 1)[1].partition("/")
    head = (
        f"POST /{path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _closed_loop(url: str, body: bytes, seconds: float, in_flight: int) -> float:
    """Requests per second with ``in_flight`` requests always outstanding."""
    request = _request(url, body)
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        conn = await _Connection.open(url)
        while time.monotonic() < deadline:
            await conn.post(request)
            done += 1
        conn.writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / (time.monotonic() - started)


async def _open_loop(url: str, body: bytes, rate: float, seconds: float) -> np.ndarray:
    """Send at ``rate``/s on a fixed schedule over ``POOL`` keep-alive connections; a
    request waits for a free connection, and that wait counts as latency. Rows of
    (scheduled offset s, latency from schedule s, ok)."""
    request = _request(url, body)
    n = int(rate * seconds)
    out = np.zeros((n, 3))
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(POOL):
        pool.put_nowait(await _Connection.open(url))
    start = time.monotonic() + 0.5

    async def one(i: int) -> None:
        at = start + i / rate
        conn = await pool.get()
        try:
            ok = float(await conn.post(request))  # 1: a score, 0: another answer
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            ok = -1.0  # the connection failed
            conn.writer.close()
            conn = await _Connection.open(url)
        pool.put_nowait(conn)
        out[i] = (at - start, time.monotonic() - at, ok)

    running: set[asyncio.Task[None]] = set()  # finished tasks are dropped, not kept
    sent = 0
    while sent < n:  # launch whatever is due, then yield for about a millisecond
        due = min(n, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            task = asyncio.create_task(one(sent))
            running.add(task)
            task.add_done_callback(running.discard)
            sent += 1
        await asyncio.sleep(0.001)
    while running:
        await asyncio.gather(*list(running))
    while not pool.empty():
        pool.get_nowait().writer.close()
    return out


def _generator(mode: str, url: str, body: bytes, a: float, b: float, queue: mp.Queue) -> None:
    # The generator's own garbage-collection pauses would show up as the service's
    # latency (and let the service close idle keep-alive connections): no cyclic GC here.
    gc.disable()
    if mode == "probe":
        queue.put(asyncio.run(_closed_loop(url, body, a, int(b))))
    else:
        queue.put(asyncio.run(_open_loop(url, body, a, b)))


def _in_child(mode: str, url: str, body: bytes, a: float, b: float) -> object:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_generator, args=(mode, url, body, a, b, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


# ---- reloads (this process) -------------------------------------------------------
@dataclass
class Reloads:
    accepted: int = 0
    refused: int = 0
    tampered_refused: bool = False
    served_through_tamper: str = ""
    errors: int = 0


def _served(url: str) -> str:
    return str(httpx.get(url + "/v1/model", timeout=5).json()["model_version"])


def _wait(predicate, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _tampered_version(registry: Path, spec, key, seed: int) -> str:  # type: ignore[no-untyped-def]
    """A correctly signed next version whose weights are then altered, made beside the
    registry and moved in whole, so the service can only ever see the altered file."""
    scratch = registry.parent / f"scratch-{seed}"
    shutil.copytree(registry, scratch)
    published = publish_model(
        registry_dir=scratch,
        model=random_model(spec, "deepfm", seed=seed, hidden=(64, 32)),
        spec=spec,
        card=example_card(band=(0.001, 0.999)),
        signing_key=key,
    )
    weights = published.path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    shutil.move(str(published.path), str(registry / MODELS_DIR / published.version))
    shutil.rmtree(scratch)
    write_latest(registry, published.version)
    return published.version


def _reloader(
    url: str,
    registry: Path,
    spec,
    key,
    every: float,
    count: int,
    stop: threading.Event,
    reloads: Reloads,
) -> None:  # type: ignore[no-untyped-def]
    tamper_at = count // 2
    for i in range(count):
        if stop.wait(every):
            return
        try:
            before = _served(url)
            if i == tamper_at:
                bad = _tampered_version(registry, spec, key, seed=1000 + i)
                refused = _wait(lambda: _refused(httpx.get(url + "/metrics", timeout=5).text))
                reloads.refused += int(refused)
                reloads.tampered_refused = refused and _served(url) == before != bad
                reloads.served_through_tamper = before
                continue
            published = publish_model(
                registry_dir=registry,
                model=random_model(spec, "deepfm", seed=2 + i, hidden=(64, 32)),
                spec=spec,
                card=example_card(band=(0.001, 0.999)),
                signing_key=key,
            )
            reloads.accepted += int(_wait(lambda v=published.version: _served(url) == v))
        except httpx.HTTPError:
            reloads.errors += 1


def _refused(metrics_text: str) -> bool:
    for line in metrics_text.splitlines():
        if line.startswith("fedctr_model_loads_total") and 'outcome="refused"' in line:
            return float(line.rsplit(" ", 1)[1]) >= 1
    return False


# ---- main -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fraction", type=float, default=0.8, help="of the probed max rate")
    parser.add_argument("--reload-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--server-log", type=Path, default=None, help="keep the service's log")
    args = parser.parse_args(argv)

    spec = load_spec(builtin_spec_path("demo"))
    tmp = Path(tempfile.mkdtemp(prefix="fedctr-soak-"))
    registry = tmp / "registry"
    key = generate_signing_key()
    publish_model(
        registry_dir=registry,
        model=random_model(spec, "deepfm", seed=1, hidden=(64, 32)),
        spec=spec,
        card=example_card(band=(0.001, 0.999)),
        signing_key=key,
    )
    pub = save_public_key(key, tmp / "platform.pub")
    body = json.dumps({"features": example_row(spec, 3)}).encode()
    srv = ServerProcess(
        registry=registry,
        public_key=pub,
        log=tmp / "server.log",
        cwd=REPO,
        extra_args=("--inference", "numpy", "--log-level", "warning"),
    )
    seconds = args.minutes * 60
    reloads = Reloads()
    try:
        srv.wait_ready()
        url = srv.url + "/v1/score"
        _in_child("probe", url, body, 3.0, PROBE_IN_FLIGHT)  # warm-up
        max_rate = float(_in_child("probe", url, body, PROBE_S, PROBE_IN_FLIGHT))  # type: ignore[arg-type]
        rate = args.fraction * max_rate
        print(f"probed max {max_rate:.0f} req/s; soaking at {rate:.0f} req/s", file=sys.stderr)
        stop = threading.Event()
        count = max(0, int(seconds // args.reload_every) - 1)  # all before the load ends
        thread = threading.Thread(
            target=_reloader,
            args=(srv.url, registry, spec, key, args.reload_every, count, stop, reloads),
        )
        thread.start()
        rows = _in_child("soak", url, body, rate, seconds)
        stop.set()
        thread.join()
    finally:
        srv.stop()
        if args.server_log:
            shutil.copyfile(tmp / "server.log", args.server_log)
        shutil.rmtree(tmp, ignore_errors=True)

    rows = np.asarray(rows)
    failures = int((rows[:, 2] != 1).sum())
    broken = int((rows[:, 2] == -1).sum())
    print(
        f"\nfedctr scoring soak: 1 uvicorn worker, numpy fast path, single-impression "
        f"requests; probed max {max_rate:.0f} req/s (closed loop, {PROBE_IN_FLIGHT} in "
        f"flight, {PROBE_S:g} s); open loop at {args.fraction:.0%} = {rate:.0f} req/s for "
        f"{args.minutes:g} min; a reload every {args.reload_every:g} s\n"
    )
    print(
        f"requests {len(rows)}, failed {failures} ({failures - broken} answered without a "
        f"score, {broken} on a broken connection)"
    )
    tamper = "refused, previous model kept" if reloads.tampered_refused else "NOT refused"
    print(
        f"reloads: {reloads.accepted} signed models swapped in, {reloads.refused} refused "
        f"(the tampered one: {tamper})"
        + (f", {reloads.errors} reload checks failed" if reloads.errors else "")
    )
    print("\n| minute | req/s | p50 ms | p99 ms | max ms | failed |")
    print("|---|---|---|---|---|---|")
    minutes = []
    for m in range(int(np.ceil(seconds / 60))):
        part = rows[(rows[:, 0] >= m * 60) & (rows[:, 0] < (m + 1) * 60)]
        if not len(part):
            continue
        lat = part[:, 1] * 1e3
        row = {
            "minute": m + 1,
            "rps": len(part) / min(60.0, seconds - m * 60),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()),
            "failed": int((part[:, 2] != 1).sum()),
        }
        minutes.append(row)
        print(
            f"| {row['minute']} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['max_ms']:.1f} | {row['failed']} |"
        )
    all_lat = rows[:, 1] * 1e3
    print(
        f"\nwhole run: p50 {np.percentile(all_lat, 50):.2f} ms, p99 "
        f"{np.percentile(all_lat, 99):.2f} ms, max {all_lat.max():.1f} ms"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "max_rate": max_rate,
                    "rate": rate,
                    "requests": len(rows),
                    "failed": failures,
                    "reloads": reloads.__dict__,
                    "minutes": minutes,
                },
                indent=2,
            )
        )
    ok = failures == 0 and reloads.tampered_refused and reloads.accepted == count - 1
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
