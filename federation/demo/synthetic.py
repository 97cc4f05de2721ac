"""A generated, deterministic federation of partner conversion logs for the demo.

Three partners (a shop, an advertiser, a CRM vendor) with non-IID logs: each sees
its own mix of user segments, devices and placements and its own base rate, and
two of them write Parquet while one writes CSV (with a handful of deliberately
bad rows that the node skips and reports). Every row names its person (``user_id``,
the spec's user key): the number of rows per user follows a Zipf law, so a few
heavy users hold many rows, as in real ad logs (what user-level DP is for). Every
row has text and image
embedding vectors whose directions carry part of the click signal, so the fusion
model has something to learn. A separate platform test file lets the platform
evaluate without ever seeing partner rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

TEXT_DIM = 16
IMAGE_DIM = 16
# Parquet row groups of the generated logs: a partner streaming its log holds one at a
# time (fedctr.models.logs.cache), so exports should keep them to ~10^5 rows
ROW_GROUP_ROWS = 1 << 16
N_ADS = 400
N_SEGMENTS = 40
# Rows per user ~ Zipf(USER_ZIPF), capped at MAX_ROWS_PER_USER: about 60% of users have
# one row while the heaviest hold hundreds.
USER_ZIPF = 2.0
MAX_ROWS_PER_USER = 400


@dataclass(frozen=True)
class PartnerProfile:
    """How one partner's traffic differs from the others'."""

    partner_id: str
    rows: int
    file_format: str  # "parquet" or "csv"
    segment_shift: int  # which user segments dominate
    mobile_share: float
    base_logit: float
    bad_rows: int = 0


DEFAULT_PARTNERS = (
    PartnerProfile("shop-a", 16000, "parquet", 0, 0.7, -1.6),
    PartnerProfile("advertiser-b", 11000, "parquet", 14, 0.4, -1.9),
    PartnerProfile("crm-c", 8000, "csv", 27, 0.55, -1.3, bad_rows=6),
)


@dataclass(frozen=True)
class _World:
    """The hidden ground truth shared by all partners (what a good model learns)."""

    ad_effect: np.ndarray
    segment_effect: np.ndarray
    affinity: np.ndarray  # [segments, ads] sparse-ish interaction
    ad_advertiser: np.ndarray
    text_dir: np.ndarray
    image_dir: np.ndarray
    ad_text: np.ndarray
    ad_image: np.ndarray


def _world(rng: np.random.Generator) -> _World:
    affinity = rng.normal(0, 1.0, (N_SEGMENTS, N_ADS)) * (rng.random((N_SEGMENTS, N_ADS)) < 0.1)
    text_dir = rng.normal(size=TEXT_DIM)
    image_dir = rng.normal(size=IMAGE_DIM)
    return _World(
        ad_effect=rng.normal(0, 0.6, N_ADS),
        segment_effect=rng.normal(0, 0.5, N_SEGMENTS),
        affinity=affinity,
        ad_advertiser=rng.integers(0, 30, N_ADS),
        text_dir=text_dir / np.linalg.norm(text_dir),
        image_dir=image_dir / np.linalg.norm(image_dir),
        ad_text=rng.normal(size=(N_ADS, TEXT_DIM)),
        ad_image=rng.normal(size=(N_ADS, IMAGE_DIM)),
    )


def _rows(world: _World, profile: PartnerProfile, rng: np.random.Generator) -> pa.Table:
    n = profile.rows
    segment = (rng.zipf(1.6, n) - 1 + profile.segment_shift) % N_SEGMENTS
    ad = rng.integers(0, N_ADS, n)
    device = np.where(rng.random(n) < profile.mobile_share, "mobile", "desktop")
    device = np.where(rng.random(n) < 0.08, "tablet", device)
    placement = rng.choice(["feed", "search", "banner", "video"], n, p=[0.4, 0.3, 0.2, 0.1])
    hour = rng.integers(0, 24, n)
    visits = rng.poisson(3.0, n) * (1 + (segment % 5))
    bid = np.round(rng.lognormal(0.0, 0.7, n), 3)
    text = world.ad_text[ad] + rng.normal(0, 0.5, (n, TEXT_DIM))
    image = world.ad_image[ad] + rng.normal(0, 0.5, (n, IMAGE_DIM))
    logit = (
        profile.base_logit
        + world.ad_effect[ad]
        + world.segment_effect[segment]
        + world.affinity[segment, ad]
        + 0.5 * (placement == "search")
        - 0.3 * (device == "desktop")
        + 0.15 * np.log1p(visits)
        + 0.35 * np.tanh(text @ world.text_dir / 2)
        + 0.35 * np.tanh(image @ world.image_dir / 2)
        + 0.2 * np.sin(hour / 24 * 2 * np.pi)
    )
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    users = zipf_users(n, rng)  # drawn last: the columns above do not depend on it
    return pa.table(
        {
            "click": click,
            "user_id": pa.array([f"{profile.partner_id}-u{u:05d}" for u in users]),
            "user_segment": pa.array([f"seg{s:03d}" for s in segment]),
            "ad_id": ad.astype(np.int64),
            "advertiser": pa.array([f"adv{a:02d}" for a in world.ad_advertiser[ad]]),
            "placement": pa.array(placement),
            "device": pa.array(device),
            "hour": hour.astype(np.int64),
            "user_visits_7d": visits.astype(np.int64),
            "bid_price": bid,
            "text_emb": pa.array(text.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "image_emb": pa.array(image.astype(np.float32).tolist(), pa.list_(pa.float32())),
        }
    )


def zipf_users(n: int, rng: np.random.Generator, *, a: float = USER_ZIPF) -> np.ndarray:
    """``n`` rows' user numbers: users with Zipf(``a``) rows each (at most
    ``MAX_ROWS_PER_USER``), in random row order."""
    counts: list[int] = []
    total = 0
    while total < n:
        batch = np.minimum(rng.zipf(a, max(16, n // 4)), MAX_ROWS_PER_USER)
        counts.extend(batch.tolist())
        total += int(batch.sum())
    owner = np.repeat(np.arange(len(counts)), counts)[:n]
    return rng.permutation(owner)


def _write_csv(table: pa.Table, path: Path, bad_rows: int, rng: np.random.Generator) -> None:
    """CSV with embeddings as space-separated numbers, plus ``bad_rows`` broken rows."""
    columns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_list(col.type):
            columns[name] = pa.array([" ".join(f"{v:.5f}" for v in vec) for vec in col.to_pylist()])
        else:
            columns[name] = pa.array([str(v) for v in col.to_pylist()])
    for k in range(bad_rows):
        i = int(rng.integers(0, table.num_rows))
        if k % 3 == 0:
            columns["click"] = _replace(columns["click"], i, "yes")
        elif k % 3 == 1:
            columns["bid_price"] = _replace(columns["bid_price"], i, "cheap")
        else:
            columns["text_emb"] = _replace(columns["text_emb"], i, "0.1 0.2")
    pacsv.write_csv(pa.table(columns), path)


def _replace(arr: pa.Array, index: int, value: str) -> pa.Array:
    values = arr.to_pylist()
    values[index] = value
    return pa.array(values)


def generate_federation(
    out_dir: Path,
    *,
    partners: tuple[PartnerProfile, ...] = DEFAULT_PARTNERS,
    platform_test_rows: int = 6000,
    seed: int = 7,
) -> tuple[dict[str, Path], Path]:
    """Write each partner's log and the platform's test file; same seed, same bytes.

    Returns ``({partner_id: log path}, platform test path)``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    world = _world(rng)
    paths: dict[str, Path] = {}
    for profile in partners:
        table = _rows(world, profile, np.random.default_rng([seed, hash_id(profile.partner_id)]))
        path = out_dir / f"{profile.partner_id}.{profile.file_format}"
        if profile.file_format == "csv":
            _write_csv(table, path, profile.bad_rows, np.random.default_rng(seed + 1))
        else:
            pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
        paths[profile.partner_id] = path
    mixed = PartnerProfile("platform-test", platform_test_rows, "parquet", 7, 0.55, -1.6)
    test_path = out_dir / "platform-test.parquet"
    pq.write_table(_rows(world, mixed, np.random.default_rng([seed, 99])), test_path)
    return paths, test_path


def hash_id(text: str) -> int:
    """A stable small integer from a partner id (Python's hash() is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(text))


__all__ = ["DEFAULT_PARTNERS", "PartnerProfile", "generate_federation", "zipf_users"]
