"""How cost grows, with a partner's log and with the number of partners (issue 19).

Usage (README "How cost grows: big logs and many partners")::

    .venv/bin/python bench/bench_scale.py --rows 10000 100000 1000000 10000000 \\
        --loopback 3 10 20 --simulation 100 1000 --strategies fedavg,fedmedian

**Partner data growth.** For each size a demo-spec log is generated (Parquet, in its
own process), then a fresh process (so peak RSS is that size's alone, read from
VmHWM) runs one DP-DeepFM round of the real partner node (``PartnerNode.train``:
read the log through the spec, calibrate, DP-SGD with fedctr-sparse, ledger) at a
declared Poisson rate of 1,024/rows and one local epoch, on each path: ``memory``
(the log read whole) and ``disk`` (encoded block by block into the node's on-disk
cache, batches read with pread). Reported: read+encode time, the next round's read,
DP epoch time, rows/s of the epoch and its ratio to the memory path, peak RSS.

**Federation growth.** Loopback deployments (SuperLink and one SuperNode process per
partner, TLS, DeepFM, as ``bench_rounds.py`` runs them) and simulations of N virtual
LR partners with 1,000 rows each (Flower's simulation engine on Ray, in a child
process): round wall time, partner compute, the overhead beyond it, and the
platform's peak RSS. On this 2-core, 24 GiB machine a loopback deployment of 30
DeepFM partners does not complete (README): 20 is the largest default.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("bench_scale")

DEFAULT_ROWS = (10_000, 100_000, 1_000_000)


def _generate(path: Path, rows: int) -> None:
    from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation

    logs, _ = generate_federation(
        path,
        partners=(PartnerProfile("scale", rows, "parquet", 0, 0.6, -1.4),),
        platform_test_rows=100,
    )
    logs["scale"].rename(path / "log.parquet")


def _one(log: Path, rows: int, out: Path, cache: str) -> None:
    """Child process: one DP round of a real partner node on ``log``, with its log read
    whole (``cache="memory"``) or encoded block by block into its on-disk cache
    (``"disk"``)."""
    import torch

    from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
    from fedctr.clients.node import PartnerNode
    from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
    from fedctr.privacy.signing import generate_signing_key, save_private_key
    from fedctr.server.platform.strategies.round_timing import peak_rss_mb

    torch.set_num_threads(1)
    work = log.parent / f"node-{rows}-{cache}"
    work.mkdir()
    key = save_private_key(generate_signing_key(), work / "partner.key")
    spec_path = builtin_spec_path("demo")
    rate = min(1.0, 1024 / rows)
    config = PartnerConfig(
        partner_id="scale",
        data=log,
        spec=spec_path,
        state_dir=work / "state",
        signing_key=key,
        ledger=work / "ledger.jsonl",
        data_cache=cache,
        privacy=PrivacySettings(
            epsilon=8.0, delta=min(1e-5, 0.1 / rows), planned_rounds=1, sample_rate=rate
        ),
        training=TrainingSettings(batch_size=1024, local_epochs=1, holdout_fraction=0.0),
    )
    node = PartnerNode(config)
    started = time.perf_counter()
    train, _ = node.splits()
    read_s = time.perf_counter() - started
    model_cfg = model_config("deepfm")
    torch.manual_seed(0)
    weights = build_model(load_spec(spec_path), model_cfg).state_dict()
    started = time.perf_counter()
    node.train(
        weights,
        model_config=model_cfg,
        spec_hash=node.spec.spec_hash,
        run_id="scale",
        server_round=1,
        seed=0,
    )
    epoch_s = time.perf_counter() - started
    started = time.perf_counter()
    PartnerNode(config).splits()  # the next round's node (one per message in Flower)
    reread_s = time.perf_counter() - started
    peak_mb = peak_rss_mb()  # VmHWM: ru_maxrss would carry the parent's peak over exec
    out.write_text(
        json.dumps(
            {
                "path": cache,
                "rows": len(train),
                "read_s": read_s,
                "epoch_s": epoch_s,
                "reread_s": reread_s,
                "rows_per_s": len(train) / epoch_s,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def measure(rows: int, root: Path, caches: list[str]) -> list[dict[str, float]]:
    folder = root / f"rows-{rows}"
    # generated in a process of its own: 10^7 rows take ~4 GB while being built
    subprocess.run([sys.executable, __file__, "--generate", str(folder), str(rows)], check=True)
    results = []
    for cache in caches:
        out = folder / f"result-{cache}.json"
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(folder / "log.parquet"),
                str(rows),
                str(out),
                cache,
            ],
            check=True,
        )
        results.append(json.loads(out.read_text()))
        logger.info("%d rows, %s: %s", rows, cache, results[-1])
    return results


def report(results: list[dict[str, float]]) -> str:
    lines = [
        "Partner data growth (DP DeepFM, one local epoch at q = 1024/rows, 1 torch thread)",
        "memory = log read whole; disk = encoded block by block into the node's cache, "
        "batches read with pread",
        f"{'rows':>10} {'path':>6} {'read+encode s':>14} {'next round read s':>18} "
        f"{'DP epoch s':>11} {'rows/s':>9} {'vs memory':>10} {'peak RSS MB':>12}",
    ]
    base = {int(r["rows"]): r["rows_per_s"] for r in results if r["path"] == "memory"}
    for r in results:
        ratio = r["rows_per_s"] / base[int(r["rows"])] if int(r["rows"]) in base else None
        lines.append(
            f"{int(r['rows']):>10,} {r['path']:>6} {r['read_s']:>14.1f} {r['reread_s']:>18.2f} "
            f"{r['epoch_s']:>11.1f} {r['rows_per_s']:>9,.0f} "
            f"{'' if ratio is None else f'{ratio:.2f}x':>10} {r['peak_rss_mb']:>12,.0f}"
        )
    return "\n".join(lines)


# ---- federation growth -------------------------------------------------------------------


def _simulate_child(root: Path, partners: int, rows: int, rounds: int, strategy: str) -> None:
    """Child process: a federation of ``partners`` virtual partners (LR, ``rows`` rows
    each) on Flower's simulation engine; the ServerApp runs in this process."""
    from fedctr.clients.config import PrivacySettings, TrainingSettings
    from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation
    from fedctr.federation.simulation import run_simulation
    from fedctr.federation.workspace import PartnerSetup, create_workspace
    from fedctr.models import builtin_spec_path, load_spec, model_config
    from fedctr.server.platform.strategies.registry import strategy_config

    profiles = tuple(
        PartnerProfile(f"p{i:04d}", rows, "parquet", (7 * i) % 32, 0.5, -1.3)
        for i in range(partners)
    )
    logs, test = generate_federation(root / "data", partners=profiles, platform_test_rows=2000)
    spec_file = builtin_spec_path("demo")
    setups = [
        PartnerSetup(
            partner_id=pid,
            data=path,
            privacy=PrivacySettings(
                epsilon=8.0, delta=1e-5, planned_rounds=rounds, sample_rate=0.1, max_grad_norm=1.0
            ),
            training=TrainingSettings(batch_size=max(1, int(0.08 * rows)), learning_rate=0.05),
        )
        for pid, path in logs.items()
    ]
    ws = create_workspace(
        root / "ws",
        spec_file=spec_file,
        spec=load_spec(spec_file),
        partners=setups,
        model=model_config("lr"),
        strategy=strategy_config(strategy, min_partners=partners),
        rounds=rounds,
        eval_data=test,
        run_name="scale",
    )
    run_simulation(
        platform_config=ws.platform_config,
        partner_configs=list(ws.partner_configs.values()),
        run_id="scale-run",
        flwr_home=root / "flwr-home",
    )


def simulate(partners: int, root: Path, *, rows: int, rounds: int, strategy: str) -> dict:
    """Rounds of a simulated federation, with the partners' own compute times."""
    from fedctr.clients.node import ROUND_TIMES_FILE
    from fedctr.server.platform.strategies.round_timing import TIMING_FILE, read_timing

    folder = root / f"sim-{partners}-{strategy}"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--simulate",
            str(folder),
            str(partners),
            str(rows),
            str(rounds),
            strategy,
        ],
        check=True,
    )
    total_s = time.perf_counter() - started
    timing = read_timing(folder / "ws" / "platform" / "runs" / "scale-run" / TIMING_FILE)
    compute: dict[int, list[float]] = {}
    for path in (folder / "ws" / "partners").glob(f"*/state/{ROUND_TIMES_FILE}"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            compute.setdefault(int(row["round"]), []).append(float(row["seconds"]))
    return {
        "kind": "simulation",
        "partners": partners,
        "strategy": strategy,
        "total_s": total_s,
        "rounds": [
            {
                "wall_s": t["train_wall_s"],
                "replies": t["train_replies"],
                "compute_sum_s": sum(compute.get(int(t["round"]), [])),
                "compute_max_s": max(compute.get(int(t["round"]), [0.0])),
                "platform_peak_mb": t.get("platform_peak_rss_mb", float("nan")),
            }
            for t in timing
        ],
    }


def loopback(partners: int, root: Path, *, rounds: int, model: str = "deepfm") -> dict:
    """Rounds of a real loopback deployment (SuperLink + one SuperNode per partner, TLS),
    as ``bench_rounds.py`` runs it (its ``ours`` side)."""
    import bench_rounds

    args = argparse.Namespace(rounds=rounds, model=model, embed_dim=28, local_epochs=1)
    data, _ = bench_rounds.generate_federation(
        root / f"loop-data-{partners}-{model}",
        partners=bench_rounds.partner_profiles(partners),
        platform_test_rows=200,
    )
    side = bench_rounds.run_side(root / f"loopback-{model}", "ours", data, args)
    return {
        "kind": "loopback" if model == "deepfm" else f"loopback-{model}",
        "partners": partners,
        "strategy": "fedavg",
        "total_s": side.run_s,
        "rounds": [
            {
                "wall_s": r["train_wall_s"],
                "replies": r["train_replies"],
                "compute_sum_s": float("nan"),
                "compute_max_s": r["train_compute_s"],
                "platform_peak_mb": r.get("platform_peak_rss_mb", float("nan")),
            }
            for r in side.rounds
        ],
    }


def federation_report(results: list[dict]) -> str:
    """Per federation: mean round wall time, overhead beyond compute, platform peak."""
    lines = [
        "Federation growth (one train message round trip per round; mean over rounds)",
        "loopback: DeepFM 2.4 MB (loopback-lr: LR), each partner its own SuperNode process, "
        "TLS; overhead = wall - slowest partner's compute",
        "simulation: LR, 1,000 rows per partner, Ray on 2 CPUs; overhead = wall - sum of "
        "partner compute / 2 workers",
        f"{'kind':<12} {'partners':>8} {'strategy':>9} {'round wall s':>13} "
        f"{'partner compute s':>18} {'overhead s':>11} {'platform peak MB':>17}",
    ]
    for r in results:
        rounds = r["rounds"]
        wall = statistics.fmean(x["wall_s"] for x in rounds)
        if r["kind"] == "simulation":
            compute = statistics.fmean(x["compute_sum_s"] for x in rounds)
            overhead = wall - compute / 2
        else:
            compute = statistics.fmean(x["compute_max_s"] for x in rounds)
            overhead = wall - compute
        peak = max(x["platform_peak_mb"] for x in rounds)
        lines.append(
            f"{r['kind']:<12} {r['partners']:>8} {r['strategy']:>9} {wall:>13.1f} "
            f"{compute:>18.1f} {overhead:>11.1f} {peak:>17,.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--generate":
        _generate(Path(argv[1]), int(argv[2]))
        return 0
    if argv and argv[0] == "--simulate":
        _simulate_child(Path(argv[1]), int(argv[2]), int(argv[3]), int(argv[4]), argv[5])
        return 0
    if argv and argv[0] == "--child":
        _one(Path(argv[1]), int(argv[2]), Path(argv[3]), argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=list(DEFAULT_ROWS))
    parser.add_argument(
        "--paths", default="memory,disk", help="comma-separated: memory (read whole), disk"
    )
    parser.add_argument(
        "--loopback",
        type=int,
        nargs="*",
        default=[3, 10, 20],
        help="partner counts (real processes; each SuperNode and its ClientApp take ~0.75 GB)",
    )
    parser.add_argument(
        "--loopback-model",
        default="deepfm",
        help="model of the loopback deployments (lr: the simulations' model, 30 fit in 24 GiB)",
    )
    parser.add_argument(
        "--simulation", type=int, nargs="*", default=[100, 1000], help="virtual partner counts"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--strategies",
        default="fedavg",
        help="simulation strategies, comma-separated (fedmedian: the list path, for contrast)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic", "flwr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tables = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        if args.rows:
            results = []
            for rows in args.rows:
                results.extend(measure(rows, root, args.paths.split(",")))
            tables.append(report(results))
        federations = []
        for n in args.loopback:
            federations.append(loopback(n, root, rounds=args.rounds, model=args.loopback_model))
            logger.info("loopback %d: %s", n, federations[-1])
        for n in args.simulation:
            for strategy in args.strategies.split(","):
                federations.append(
                    simulate(n, root, rows=1000, rounds=args.rounds, strategy=strategy)
                )
                logger.info("simulation %d %s: %s", n, strategy, federations[-1])
        if federations:
            tables.append(federation_report(federations))
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
