"""How a partner's cost grows with its log: epoch time, rows/s and peak memory (issue 19).

Usage::

    .venv/bin/python bench/bench_scale.py                      # 10^4, 10^5, 10^6 rows
    .venv/bin/python bench/bench_scale.py --rows 10000000      # the 10^7 row, separately

For each size a demo-spec log is generated (Parquet), then a fresh process (so peak
RSS is that size's alone) runs one DP-DeepFM round of the real partner node
(``PartnerNode.train``: read the log through the spec, calibrate, DP-SGD with
fedctr-sparse, ledger), at a declared Poisson rate giving ~1,024-row batches at 10^6
rows and one local epoch. Reported: read+encode time, DP epoch time, rows/s of the
epoch, and the process's peak RSS.

This is the **in-memory path** (the whole log is read and encoded before training):
the baseline that streaming through pyarrow datasets (issue 19) is to be measured
against, side by side, in this same script.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
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
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
    _generate(folder, rows)
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
        "memory-mapped",
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _one(Path(argv[1]), int(argv[2]), Path(argv[3]), argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument(
        "--paths", default="memory,disk", help="comma-separated: memory (read whole), disk"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        results = []
        for rows in args.rows:
            results.extend(measure(rows, Path(tmp), args.paths.split(",")))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
