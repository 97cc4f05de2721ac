"""Round overhead of a real deployment on loopback: stock Flower 1.41 vs fedctr's launchers.

Usage::

    .venv/bin/python bench/bench_rounds.py                  # 3 partners, 4 rounds, both sides
    .venv/bin/python bench/bench_rounds.py --rounds 2 --modes ours
    .venv/bin/python bench/bench_rounds.py --modes ours,secagg --partners 3,10 --rounds 3

Both sides start the real processes an operator starts (``fedctr platform start``,
``fedctr partner start``: SuperLink with TLS and node authentication, three
authenticated SuperNodes on 127.0.0.1), with the same data, model (DeepFM, 2.4 MB
of weights by default) and DP-SGD settings, and run ``--rounds`` rounds:

* ``stock``: Flower's own processes and waits: ``flower-supernode`` starts
  ``flower-superexec``, which starts one ``flwr-clientapp`` per message (importing
  torch and Opacus each time); the ServerApp collects replies every 3 s.
* ``ours``: the forking executor (imports once, forks per task), shortened SuperNode
  waits, replies collected every 0.1 s, models packed into one array per dtype
  (``fedctr.federation.packing``).
* ``secagg``: ``ours`` under SecAgg+ (``[secure_aggregation]``, everyone masks with
  everyone): three more message round trips per round (keys, shares, unmask), each
  partner masks its update and the platform unmasks the sum.

Either side sends one train message per round (partner-side evaluation is off: see
README "Privacy boundary"). The ServerApp's ``timing.jsonl`` gives, per round, the
wall time of the message round trip (push until the last reply); each partner node
keeps its own compute time for the round (reading data, training, ledgering) in a
local file (``fedctr.clients.node.ROUND_TIMES_FILE``) that it never sends: this benchmark
runs every party on one machine and reads both. Overhead = wall - slowest partner's
compute: what the transport, processes and polling add to the partners' work.
Partners use full-batch DP-SGD (sampling rate 1) so that noise calibration does not
dominate the compute column.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.clients.node import ROUND_TIMES_FILE
from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation
from fedctr.federation.deployment.bootstrap import (
    PartnerOptions,
    PlatformOptions,
    add_partner,
    init_partner,
    init_platform,
    read_registration,
)
from fedctr.federation.deployment.localrun import LocalDeployment
from fedctr.federation.deployment.processes import StopFlag, free_port
from fedctr.federation.deployment.runs import run_platform
from fedctr.models import ModelConfig, builtin_spec_path
from fedctr.privacy.secagg import SecAggSettings
from fedctr.server.platform.strategies.round_timing import TIMING_FILE, read_timing

logger = logging.getLogger("bench_rounds")

PARTNERS = (
    PartnerProfile("shop-a", 1500, "parquet", 0, 0.7, -1.2),
    PartnerProfile("advertiser-b", 1200, "parquet", 14, 0.4, -1.4),
    PartnerProfile("crm-c", 900, "csv", 27, 0.55, -1.0),
)


def partner_profiles(count: int) -> tuple[PartnerProfile, ...]:
    """The three benchmark partners, then more like them (``p04``...) up to ``count``."""
    extra = tuple(
        PartnerProfile(f"p{i + 1:02d}", 1200, "parquet", (7 * i) % 32, 0.5, -1.3)
        for i in range(len(PARTNERS), count)
    )
    return (PARTNERS + extra)[:count]


@dataclass(frozen=True)
class Side:
    mode: str
    partners: int
    rounds: list[dict[str, float]]
    run_s: float
    startup_s: float
    load: float  # 1-minute load average around the run (the machine is shared)

    def wall(self) -> list[float]:
        return [r["train_wall_s"] for r in self.rounds]

    def compute(self) -> list[float]:
        return [r["train_compute_s"] for r in self.rounds]

    def overhead(self) -> list[float]:
        return [w - c for w, c in zip(self.wall(), self.compute(), strict=True)]


def _prepare(root: Path, mode: str, data: dict[str, Path], args: argparse.Namespace) -> Path:
    port = free_port()
    platform = init_platform(
        root / mode / "platform",
        PlatformOptions(
            hosts=("127.0.0.1",),
            spec=builtin_spec_path("demo"),
            port=port,
            listen="127.0.0.1",
            rounds=args.rounds,
            min_partners=len(data),
            model=ModelConfig.from_dict(
                {"name": args.model}
                if args.model == "lr"  # LR has no embeddings to size
                else {"name": args.model, "embed_dim": args.embed_dim}
            ),
            timeout_s=600.0,
            run_name=f"bench-{mode}",
            secure_aggregation=SecAggSettings() if mode == "secagg" else None,
        ),
    )
    for pid, path in data.items():
        partner = init_partner(
            root / mode / pid,
            PartnerOptions(
                partner_id=pid,
                data=path,
                spec=platform.parent / "spec.toml",
                superlink=f"127.0.0.1:{port}",
                ca_cert=platform.parent / "tls" / "ca.crt",
                privacy=PrivacySettings(
                    epsilon=8.0,
                    delta=1e-5,
                    planned_rounds=args.rounds,
                    sample_rate=1.0,
                    max_grad_norm=5.0,
                    accountant="rdp",
                ),
                training=TrainingSettings(
                    batch_size=1200, local_epochs=args.local_epochs, learning_rate=0.05
                ),
            ),
        )
        registration = read_registration(partner.parent / "registration.toml")
        add_partner(platform, registration, replace=False)
    return platform.parent


def run_side(root: Path, mode: str, data: dict[str, Path], args: argparse.Namespace) -> Side:
    root = root / f"n{len(data)}"
    platform = _prepare(root, mode, data, args)
    partners = [root / mode / pid for pid in data]
    flags = ("--stock",) if mode == "stock" else ()
    started = time.monotonic()
    with LocalDeployment(root / mode / "launchers") as deployment:
        deployment.start_platform(platform, *flags)
        deployment.wait_platform(platform, timeout_s=300)
        for partner in partners:
            deployment.start_partner(partner, *flags, "--skip-data-check")
        deployment.wait_partners(partners, timeout_s=400)
        startup = time.monotonic() - started
        logger.info("%s: federation up in %.0fs; running %d rounds", mode, startup, args.rounds)
        t0, load0 = time.monotonic(), os.getloadavg()[0]
        run_platform(
            platform / "platform.toml", stop=StopFlag(), run_id=f"{mode}-run", timeout_s=3600
        )
        run_s, load = time.monotonic() - t0, (load0 + os.getloadavg()[0]) / 2
    rows = read_timing(platform / "runs" / f"{mode}-run" / TIMING_FILE)
    compute = _partner_compute(partners, f"{mode}-run")
    for row in rows:
        row["train_compute_s"] = compute.get(int(row["round"]), 0.0)
    return Side(mode, len(data), rows, run_s, startup, load)


def _partner_compute(partners: list[Path], run_id: str) -> dict[int, float]:
    """Round -> the slowest partner's own compute time, from the nodes' local files."""
    slowest: dict[int, float] = {}
    for partner in partners:
        path = partner / "state" / ROUND_TIMES_FILE
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["run_id"] == run_id:
                rnd = int(row["round"])
                slowest[rnd] = max(slowest.get(rnd, 0.0), float(row["seconds"]))
    return slowest


def report(sides: list[Side]) -> str:
    def mean(xs: list[float]) -> float:
        return statistics.fmean(xs) if xs else float("nan")

    lines = [
        f"{os.cpu_count()} CPUs; load = 1-min load average during the run",
        f"{'side':<6} {'partners':>8} {'round wall s':>13} {'compute s':>10} {'overhead s':>11} "
        f"{'overhead, each round':<32} {'run s':>7} {'load':>5}",
    ]
    for s in sides:
        each = " ".join(f"{x:.2f}" for x in s.overhead())
        lines.append(
            f"{s.mode:<6} {s.partners:>8} {mean(s.wall()):>13.2f} {mean(s.compute()):>10.2f} "
            f"{mean(s.overhead()):>11.2f} {each:<32} {s.run_s:>7.1f} {s.load:>5.1f}"
        )
    for n in sorted({s.partners for s in sides}):
        over = {s.mode: mean(s.overhead()) for s in sides if s.partners == n}
        wall = {s.mode: mean(s.wall()) for s in sides if s.partners == n}
        if "stock" in over and "ours" in over and over["ours"] > 0:
            lines.append(
                f"{n} partners, overhead per round: stock {over['stock']:.2f} s -> ours "
                f"{over['ours']:.2f} s ({over['stock'] / over['ours']:.1f}x less)"
            )
        if "secagg" in wall and "ours" in wall and wall["ours"] > 0:
            lines.append(
                f"{n} partners, round wall time: SecAgg+ {wall['secagg']:.2f} s / plain "
                f"{wall['ours']:.2f} s = {wall['secagg'] / wall['ours']:.2f}x"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--modes", default="stock,ours", help="comma-separated: stock, ours, secagg"
    )
    parser.add_argument("--partners", default="3", help="comma-separated partner counts, e.g. 3,10")
    parser.add_argument("--model", default="deepfm")
    parser.add_argument("--embed-dim", type=int, default=28, help="28: 2.4 MB DeepFM")
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    for noisy in ("httpx", "alembic", "flwr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-rounds-") as tmp:
        root = args.keep or Path(tmp)
        sides = []
        for count in (int(n) for n in args.partners.split(",")):
            data, _ = generate_federation(
                root / f"data-{count}", partners=partner_profiles(count), platform_test_rows=200
            )
            sides += [run_side(root, m.strip(), data, args) for m in args.modes.split(",")]
    text = report(sides)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {"mode": s.mode, "partners": s.partners, "rounds": s.rounds, "run_s": s.run_s}
                    for s in sides
                ]
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
