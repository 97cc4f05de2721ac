"""Empirical audit: lower bound vs claimed epsilon, its power, and what it costs.

Every row runs the one-run canary audit (``run_empirical_audit``: the partner node's
real training path, Steinke, Nasr & Jagielski 2023) on the same partner log and
canary count, one row after the other in this process, so the columns compare like
with like:

* ``lower bound``: the 95% empirical lower bound on epsilon over ``--seeds`` seeds
  (canaries, membership, noise and sampling all change with the seed), min-max;
  ``lower/claimed``: the largest ratio seen (tightness; above 1 refutes the claim);
* ``audit s``: the whole audit (training with the included canaries + scoring);
  ``training s``: the same node path with 2 canaries (the minimum), i.e. one plain
  local training run of the configuration; ``cost``: their ratio.

Broken rows use the deliberately broken DP-SGD implementations of the tests
(tests/support/broken_dpsgd.py: sigma = 0, noise / 10, clipping off, noise on the
dense layer only), which keep the accounting as declared.

    .venv/bin/python bench/bench_audit.py                 # 5 seeds, 2,000 canaries
    .venv/bin/python bench/bench_audit.py --seeds 2 --rows 1500 --canaries 2000
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support: the broken implementations

from fedctr.clients.canary_audit.run import run_empirical_audit  # noqa: E402
from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings  # noqa: E402
from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation  # noqa: E402
from fedctr.models import builtin_spec_path, load_spec, model_config  # noqa: E402
from fedctr.models.logs.reader import EncodedData, read_partner_log  # noqa: E402
from fedctr.privacy.audit.one_run import max_epsilon_lower_bound  # noqa: E402
from tests.support.broken_dpsgd import register_broken_implementations  # noqa: E402

SPEC = builtin_spec_path("demo")
MODEL = model_config("lr")
CONFIDENCE, DELTA = 0.95, 1e-5


@dataclass(frozen=True)
class Row:
    label: str
    implementation: str
    epsilon: float


ROWS = (
    Row("fedctr-sparse (correct)", "fedctr-sparse", 1.0),
    Row("fedctr-sparse (correct)", "fedctr-sparse", 3.0),
    Row("fedctr-sparse (correct)", "fedctr-sparse", 8.0),
    Row("opacus-ghost (correct)", "opacus-ghost", 1.0),
    Row("sigma = 0", "broken-sigma0", 1.0),
    Row("noise 10x too small", "broken-sigma-tenth", 1.0),
    Row("clipping off", "broken-no-clipping", 1.0),
    Row("noise on the dense layer only", "broken-dense-noise-only", 1.0),
)


def _config(data: Path, root: Path, implementation: str, epsilon: float) -> PartnerConfig:
    return PartnerConfig(
        partner_id="shop-a",
        data=data,
        spec=SPEC,
        state_dir=root / "state",
        privacy=PrivacySettings(
            epsilon=epsilon,
            delta=DELTA,
            planned_rounds=2,
            sample_rate=0.25,
            max_grad_norm=0.1,
            dp_implementation=implementation,
        ),
        training=TrainingSettings(batch_size=625, local_epochs=2, learning_rate=0.02),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1500, help="partner log rows")
    parser.add_argument("--canaries", type=int, default=2000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
    register_broken_implementations()

    with tempfile.TemporaryDirectory(prefix="fedctr-bench-audit-") as tmp:
        base = Path(tmp)
        paths, _ = generate_federation(
            base / "logs",
            partners=(PartnerProfile("shop-a", args.rows, "parquet", 0, 0.7, -1.2),),
            platform_test_rows=10,
        )
        data = paths["shop-a"]
        rows: EncodedData = read_partner_log(data, load_spec(SPEC))
        header = (
            f"{'configuration':32} {'claimed ε':>9} {'lower bound (min-max)':>22} "
            f"{'lower/claimed':>13} {'refuted':>8} {'audit s':>8} {'training s':>10} {'cost':>6}"
        )
        lines = [header, "-" * len(header)]
        for i, row in enumerate(ROWS):
            bounds, claims, audit_s, train_s, refuted = [], [], [], [], 0
            for seed in range(args.seeds):
                root = base / f"{i}-{seed}"
                config = _config(data, root, row.implementation, row.epsilon)
                t0 = time.perf_counter()
                result = run_empirical_audit(
                    config, MODEL, canaries=args.canaries, seed=seed, rows=rows
                )
                audit_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                run_empirical_audit(
                    _config(data, root / "plain", row.implementation, row.epsilon),
                    MODEL,
                    canaries=2,
                    seed=seed,
                    rows=rows,
                )
                train_s.append(time.perf_counter() - t0)
                bounds.append(result.lower_bound)
                claims.append(result.claimed_epsilon)
                refuted += not result.passed
            ratio = max(b / c for b, c in zip(bounds, claims, strict=True))
            audit, train = statistics.median(audit_s), statistics.median(train_s)
            lines.append(
                f"{row.label:32} {statistics.median(claims):9.3f} "
                f"{min(bounds):10.2f} - {max(bounds):<9.2f} {ratio:13.2f} "
                f"{refuted:>4}/{args.seeds:<3} {audit:8.2f} {train:10.2f} {audit / train:5.2f}x"
            )
            print(f"done {row.label} ε={row.epsilon}", file=sys.stderr, flush=True)
    print(
        f"\nLR, demo spec, {args.rows} partner rows, {args.canaries} canaries, q 0.25, "
        f"2 rounds x 8 steps, C 0.1, delta {DELTA}, {args.seeds} seeds per row, "
        f"{CONFIDENCE:.0%} confidence"
    )
    print("\n".join(lines))
    ceilings = ", ".join(
        f"m={m}: {max_epsilon_lower_bound(m, confidence=CONFIDENCE, delta=DELTA):.2f}"
        for m in (1000, 2000, 10000, 50000)
    )
    print(f"\nceiling (no outcome of m canaries can show more, balanced guess): {ceilings}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
