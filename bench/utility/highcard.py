"""A generated high-cardinality CTR log with planted signal (issue 15's kind of data).

The shared real sets are low-cardinality or tiny, while real partner logs have
categorical columns with 10^4-10^5 values, where DP-SGD's dense noise on embedding
tables costs the most. This log has 19 hashed categorical columns, five of them with
10^4-2.5x10^4 distinct values in 10^5 rows (a Zipf head of frequent values mixed
with a uniform long tail, mostly seen once or twice), and clicks from a hidden
logistic model: a per-value effect in every column (larger in the head, so it is
learnable), one pairwise interaction (what FM and DeepFM are for), and a base rate
near 10%. Written as Parquet and read through
its spec like any partner log; same seed, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Values per column: five of 10^4-4x10^4, then falling to a handful.
CARDINALITIES = (40_000, 30_000, 20_000, 15_000, 10_000, 5_000, 2_000, 1_000, 500, 200, 100, 50)
CARDINALITIES += (30, 20, 10, 10, 5, 5, 3)
ZIPF = 1.2
TAIL = 0.3  # share of draws uniform over all values: the long tail, most seen once or twice
BASE_LOGIT = -2.9
SEED = 1515
LABEL = "click"


def _column(rng: np.random.Generator, n: int, cardinality: int) -> np.ndarray:
    """Value ranks: a Zipf head (rank 0 most frequent) mixed with a uniform tail."""
    head = np.minimum(rng.zipf(ZIPF, n), cardinality) - 1
    tail = rng.integers(0, cardinality, n)
    return np.where(rng.random(n) < TAIL, tail, head)


def generate_highcard(out_dir: Path, *, rows: int = 102_000, seed: int = SEED) -> tuple[Path, Path]:
    """Write the log and its spec; return ``(parquet path, spec path)`` (reused if present)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / f"highcard-{rows}-{seed}.parquet"
    spec_path = out_dir / f"highcard-{rows}-{seed}.spec.json"
    if data_path.exists() and spec_path.exists():
        return data_path, spec_path
    rng = np.random.default_rng(seed)
    names = [f"c{j:02d}" for j in range(len(CARDINALITIES))]
    columns = [_column(rng, rows, card) for card in CARDINALITIES]
    logit = np.full(rows, BASE_LOGIT)
    for values, card in zip(columns, CARDINALITIES, strict=True):
        # head values carry most of the signal: effect scale falls with the value's rank
        effect = rng.normal(0.0, 0.35, card) / np.sqrt(1 + np.arange(card) / 50)
        logit += effect[values]
    a, b = columns[6], columns[8]  # an interaction of a 2,000- and a 500-value column
    pair = rng.normal(0.0, 0.6, (CARDINALITIES[6], CARDINALITIES[8]))
    logit += pair[a, b] * (a < 200) * (b < 50)
    click = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    arrays = {n: pa.array(v, pa.int64()) for n, v in zip(names, columns, strict=True)}
    table = pa.table({LABEL: click, **arrays})
    pq.write_table(table, data_path)
    spec = {
        "version": 1,
        "name": "highcard-generated",
        "salt": "fedctr-bench-highcard-v1",
        "label": LABEL,
        "categorical": [
            {"name": n, "buckets": 65_536 if card > 4_000 else 8_192}
            for n, card in zip(names, CARDINALITIES, strict=True)
        ],
    }
    spec_path.write_text(json.dumps(spec, indent=1))
    return data_path, spec_path


__all__ = ["CARDINALITIES", "generate_highcard"]
