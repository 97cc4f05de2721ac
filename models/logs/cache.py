"""A partner's log encoded once, in blocks, into column files on the partner's own disk.

Reading a 10^7-row log whole holds the Arrow table, its strings and every encoded
column at once (about 1 GB per 10^6 rows of the demo spec, measured in
``bench/bench_scale.py``). Here the log is scanned block by block through an Arrow
dataset (Parquet row groups, CSV blocks: :func:`fedctr.models.logs.formats.iter_spec_columns`),
each block is validated and encoded exactly as :func:`~fedctr.models.logs.reader.read_partner_log`
would (:class:`~fedctr.models.logs.reader.LogEncoder`), split into train and holdout
rows by the partner's secret holdout key, and appended to one row-major file per split.
Training reads each Poisson batch's rows from it (:class:`~fedctr.models.logs.reader.RowStore`,
one ``pread`` per row), so memory holds one batch, not the log.

The cache is keyed by the file (path, size, modification time), the spec, the holdout
fraction and key, the bad-row policy and whether user ids are read, so a log that
changes is encoded again, and it is reused across rounds and restarts of the node: a
row is encoded once, not once per round. It lives in the partner's state directory and,
like the log, never leaves the node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fedctr.models.logs.formats import iter_spec_columns
from fedctr.models.logs.reader import (
    BadRowPolicy,
    EncodedData,
    LoadReport,
    LogEncoder,
    RowIssue,
    RowStore,
    UserKeyCheck,
)
from fedctr.models.spec import FeatureSpec

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: one row-major file per split
BLOCK_ROWS = 1 << 14  # rows encoded at a time: the unit of memory while building


def cache_key(
    path: Path,
    spec: FeatureSpec,
    *,
    holdout_fraction: float,
    holdout_key: bytes,
    policy: BadRowPolicy,
    users: bool,
) -> str:
    """What the encoded rows depend on; any change builds a new cache."""
    stat = path.stat()
    parts = {
        "version": FORMAT_VERSION,
        "file": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "spec": spec.spec_hash,
        "holdout_fraction": holdout_fraction,
        "holdout_key": hashlib.sha256(holdout_key).hexdigest(),
        "policy": str(policy),
        "users": users,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def row_dtype(spec: FeatureSpec, *, users: bool) -> np.dtype:
    """One encoded row on disk: the user id (if kept), bucket ids, numerics, dense
    vectors and label, aligned so every field is a whole number of its items."""
    fields: list[tuple] = [("users", "<i8")] if users else []
    fields += [
        ("x_cat", "<i8", (spec.num_categorical,)),
        ("x_num", "<f4", (spec.num_numeric,)),
        ("x_dense", "<f4", (spec.dense_dim(),)),
        ("y", "<f4"),
    ]
    return np.dtype(fields, align=True)


class _RowWriter:
    """Appends one split's encoded rows to its row file."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.dtype = path, dtype
        self._fh = path.open("wb")
        self.rows = 0

    def append(self, data: EncodedData) -> None:
        rows = np.zeros(len(data), dtype=self.dtype)
        for name in self.dtype.names or ():
            rows[name] = getattr(data, name)
        self._fh.write(rows.tobytes())
        self.rows += len(data)

    def close(self) -> dict[str, object]:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return {"rows": self.rows}


def _open(path: Path, rows: int, dtype: np.dtype, report: LoadReport) -> EncodedData:
    """The split's rows: views of a memory map for shapes and ``len`` (and, under
    user-level DP, the user ids), a :class:`RowStore` for reading batches."""
    if rows == 0:
        table = np.zeros(0, dtype=dtype)
    else:  # copy-on-write: writable for torch, never written
        table = np.memmap(path, dtype=dtype, mode="c", shape=(rows,))
    users = table["users"] if "users" in (dtype.names or ()) else None
    return EncodedData(
        table["x_cat"],
        table["x_num"],
        table["x_dense"],
        table["y"],
        report,
        users,
        store=RowStore(path, dtype, rows) if rows else None,
    )


def _report(raw: dict) -> LoadReport:
    return LoadReport(
        file=raw["file"],
        rows_read=raw["rows_read"],
        rows_kept=raw["rows_kept"],
        issues=tuple(RowIssue(**i) for i in raw["issues"]),
        issue_count=raw["issue_count"],
    )


def load_cached(
    folder: Path, spec: FeatureSpec, *, users: bool
) -> tuple[EncodedData, EncodedData] | None:
    """(train, holdout) from a finished cache folder, or ``None`` if there is none."""
    meta_file = folder / "meta.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    report = _report(meta["report"])
    dtype = row_dtype(spec, users=users)
    return (
        _open(folder / "train.rows", meta["train"]["rows"], dtype, report),
        _open(folder / "holdout.rows", meta["holdout"]["rows"], dtype, report),
    )


def encoded_splits(
    path: Path,
    spec: FeatureSpec,
    cache_dir: Path,
    *,
    holdout_fraction: float,
    holdout_key: bytes,
    policy: BadRowPolicy = BadRowPolicy.SKIP,
    users: bool = True,
    block_rows: int = BLOCK_ROWS,
) -> tuple[EncodedData, EncodedData]:
    """(train, holdout) of the log at ``path``, read from its encoded cache in
    ``cache_dir``; built first (block by block) if the log, spec or split changed.

    The rows, their order, the split and the report are those of
    :func:`~fedctr.models.logs.reader.read_partner_log` followed by
    :meth:`~fedctr.models.logs.reader.EncodedData.split`; errors are the same
    :class:`~fedctr.models.logs.errors.DataFileError`. Raises
    :class:`~fedctr.models.logs.reader.UserKeyCollision` if two people's user keys
    share an id (the caller reads the file whole, where exact ids are used).
    """
    path = Path(path)
    key = cache_key(
        path,
        spec,
        holdout_fraction=holdout_fraction,
        holdout_key=holdout_key,
        policy=policy,
        users=users,
    )
    folder = cache_dir / key
    with_users = users and bool(spec.user_key)
    cached = load_cached(folder, spec, users=with_users)
    if cached is not None:
        logger.info("%s: encoded rows read from the node's cache %s", path, folder)
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = cache_dir / f".{key}.{os.getpid()}.building"
    shutil.rmtree(building, ignore_errors=True)
    try:
        meta = _build(
            path,
            spec,
            building,
            holdout_fraction=holdout_fraction,
            holdout_key=holdout_key,
            policy=policy,
            users=users,
            block_rows=block_rows,
        )
        (building / "meta.json").write_text(json.dumps(meta))
        for old in cache_dir.iterdir():  # one log, one cache: older encodings go
            if old.name != key and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
        try:
            building.rename(folder)
        except OSError:  # another process finished the same cache first
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    cached = load_cached(folder, spec, users=with_users)
    assert cached is not None
    return cached


def _build(
    path: Path,
    spec: FeatureSpec,
    folder: Path,
    *,
    holdout_fraction: float,
    holdout_key: bytes,
    policy: BadRowPolicy,
    users: bool,
    block_rows: int,
) -> dict:
    with_users = users and bool(spec.user_key)
    encoder = LogEncoder(
        path, spec, policy=policy, users=users, user_check=UserKeyCheck() if with_users else None
    )
    dtype = row_dtype(spec, users=with_users)
    train = _RowWriter(folder / "train.rows", dtype)
    holdout = _RowWriter(folder / "holdout.rows", dtype)
    try:
        for block in iter_spec_columns(path, spec, user_key=users, rows=block_rows):
            if block.table.num_rows == 0:
                continue
            kept = encoder.encode(block).kept(None)
            hold = kept.holdout_mask(holdout_fraction, key=holdout_key)
            train.append(kept.take(np.flatnonzero(~hold)))
            holdout.append(kept.take(np.flatnonzero(hold)))
        report = encoder.report()
    finally:
        train_meta, holdout_meta = train.close(), holdout.close()
    logger.info(
        "%s: encoded %d rows into the node's cache (%d train, %d holdout)",
        path,
        report.rows_kept,
        train_meta["rows"],
        holdout_meta["rows"],
    )
    return {
        "train": train_meta,
        "holdout": holdout_meta,
        "report": {
            **{k: v for k, v in asdict(report).items() if k != "issues"},
            "issues": [asdict(i) for i in report.issues],
        },
    }


__all__ = ["BLOCK_ROWS", "cache_key", "encoded_splits", "load_cached", "row_dtype"]
