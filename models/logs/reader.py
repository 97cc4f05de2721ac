"""Read a partner's conversion log (CSV, Parquet, or a format the spec's ``[source]``
names; see :mod:`fedctr.models.logs.formats`) through the feature spec.

Nothing here guesses: a missing column rejects the file; a bad value (a label
that is not 0/1, a number that does not parse or is infinite, an embedding of the
wrong length) is either fatal for the file (policy ``reject``) or skips that row
(policy ``skip``), and every skipped row is counted and reported with its row
number, column and reason. Missing values are fine: categoricals go to bucket 0,
numerics to the spec's fill value. When the spec names a ``user_key``, every row must
have all of its user-key cells (a row no person can be named for cannot be protected
at the user level): an empty one is a bad row like the others.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, TensorDataset

from fedctr.models.encoding import hash_column, transform_numeric
from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.formats import read_spec_columns
from fedctr.models.logs.formats.base import ReadResult
from fedctr.models.spec import EmbeddingFeature, FeatureSpec

logger = logging.getLogger(__name__)

_NEGATIVE_LABELS = ("0", "0.0", "false", "False")


class BadRowPolicy(StrEnum):
    """What to do with a row that breaks the spec."""

    REJECT = "reject"
    SKIP = "skip"


@dataclass(frozen=True)
class RowIssue:
    """One bad value: ``row`` is the 1-based data row (CSV line = row + 1)."""

    row: int
    column: str
    reason: str

    def describe(self, file: str) -> str:
        return f"{file}: row {self.row}, column '{self.column}': {self.reason}"


@dataclass(frozen=True)
class LoadReport:
    """What reading a file did; ``issues`` keeps the first few examples."""

    file: str
    rows_read: int
    rows_kept: int
    issues: tuple[RowIssue, ...] = ()
    issue_count: int = 0

    @property
    def rows_skipped(self) -> int:
        return self.rows_read - self.rows_kept

    def summary(self) -> str:
        text = f"{self.file}: read {self.rows_read} rows, kept {self.rows_kept}"
        if self.rows_skipped:
            text += f", skipped {self.rows_skipped} bad rows ({self.issue_count} bad values)"
            text += "; e.g. " + "; ".join(
                f"row {i.row} column '{i.column}': {i.reason}" for i in self.issues[:3]
            )
        return text


@dataclass(frozen=True)
class EncodedData:
    """Model-ready arrays of one partner (or one split of it)."""

    x_cat: np.ndarray  # int64 [N, F]
    x_num: np.ndarray  # float32 [N, D]
    x_dense: np.ndarray  # float32 [N, E]
    y: np.ndarray  # float32 [N]
    report: LoadReport | None = field(default=None, compare=False)
    # int64 [N]: each row's user (salted hash of the spec's user_key cells), when the spec
    # names one. Partner-local: it is no model input and never leaves the node.
    users: np.ndarray | None = None
    # Set when the arrays are views of a row file on the partner's disk
    # (fedctr.models.logs.cache): batches are then read from it, not from the views.
    store: RowStore | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def on_disk(self) -> bool:
        """Whether the rows live in the partner's encoded cache on disk
        (:mod:`fedctr.models.logs.cache`) rather than in memory."""
        return self.store is not None

    def batches(self, size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """``(x_cat, x_num, x_dense, y)`` of consecutive rows, ``size`` at a time (from
        disk one read per batch, so memory holds one batch)."""
        for start in range(0, len(self), size):
            stop = min(len(self), start + size)
            if self.store is not None:
                yield self.store.read(start, stop)
            else:
                yield tuple(t[start:stop] for t in self.tensors())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(self.x_cat),
            torch.from_numpy(self.x_num),
            torch.from_numpy(self.x_dense),
            torch.from_numpy(self.y),
        )

    def dataset(self) -> TensorDataset:
        return TensorDataset(*self.tensors())

    def loader(
        self, *, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
    ) -> DataLoader:
        """Mini-batches ``(x_cat, x_num, x_dense, y)`` of these rows, fetched a batch at a time.

        Same batches as ``DataLoader(self.dataset(), ...)`` (same sampler, same order),
        without its per-row fetch and stack, which cost ~30x the indexing on CTR logs of a
        few columns. Opacus' Poisson loader keeps the dataset and collate function.
        """
        rows = (
            StoredRows(self, self.store)
            if self.store is not None
            else _BatchFetchDataset(*self.tensors())
        )
        return DataLoader(
            rows,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=_already_collated,
        )

    def take(self, index: np.ndarray) -> EncodedData:
        return EncodedData(
            self.x_cat[index],
            self.x_num[index],
            self.x_dense[index],
            self.y[index],
            self.report,
            None if self.users is None else self.users[index],
        )

    def split(self, holdout_fraction: float, *, key: bytes) -> tuple[EncodedData, EncodedData]:
        """(train, holdout), each in file order; see :meth:`holdout_mask`.

        ``key``: the partner's secret :func:`fedctr.clients.holdout.holdout_key`; benchmarks
        and tests that used a ``seed`` pass the public :func:`fedctr.clients.holdout.seed_key`.
        """
        hold = self.holdout_mask(holdout_fraction, key=key)
        return self.take(np.flatnonzero(~hold)), self.take(np.flatnonzero(hold))

    def holdout_mask(self, holdout_fraction: float, *, key: bytes) -> np.ndarray:
        """Boolean [N]: row i is held out iff ``blake2b(row_i, key=key, digest_size=8)``,
        a big-endian integer, divided by 2**64 is below ``holdout_fraction``.

        ``row_i`` is the row's encoded content (:meth:`row_bytes`), so a row's side
        depends on the key and the row alone: not on N, the row order or the other
        rows. Adding or removing a row moves no other row across the split, and
        identical rows (duplicates) always land on the same side. Each row is hashed
        once with :mod:`hashlib` (about 1.5 s per million rows).
        """
        if not 0 <= holdout_fraction < 1:
            raise ValueError("holdout_fraction must be in [0, 1)")
        if not isinstance(key, bytes) or not 16 <= len(key) <= 64:
            raise ValueError("the holdout key must be 16 to 64 bytes")
        digest = hashlib.blake2b
        hashes = b"".join(digest(row, key=key, digest_size=8).digest() for row in self.row_bytes())
        values = np.frombuffer(hashes, dtype=">u8")
        # h / 2**64 < f  <=>  h < ceil(f * 2**64), exactly (f < 1, so it fits in uint64).
        threshold = math.ceil(Fraction(holdout_fraction) * 2**64)
        return values < np.uint64(threshold)

    def row_bytes(self) -> np.ndarray:
        """uint8 [N, W]: each row's encoded values, little-endian (x_cat, x_num, x_dense, y)."""
        n = len(self)
        parts = [
            np.ascontiguousarray(a.reshape(n, math.prod(a.shape[1:])), dtype=dtype).view(np.uint8)
            for a, dtype in (
                (self.x_cat, "<i8"),
                (self.x_num, "<f4"),
                (self.x_dense, "<f4"),
                (self.y, "<f4"),
            )
        ]
        return np.ascontiguousarray(np.concatenate(parts, axis=1))


class _BatchFetchDataset(TensorDataset):
    """A TensorDataset that DataLoader reads one batch per call (``__getitems__``)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


class RowStore:
    """Encoded rows in one row-major file (a numpy structured dtype per row), read with
    ``pread``: a batch's rows one read each, a range in one read.

    Why not a memory map: on current kernels the page cache holds large folios, and a
    fault maps a whole folio (measured on this machine's ext4: one 1,024-row random
    gather of a 1.3 GB column mapped 1 GB), so a mapped file's pages fill the resident
    set however few rows are read. ``pread`` copies only the rows asked for (~0.9 ms per
    1,024 rows here), and the file's pages stay in the page cache, outside the process.
    """

    def __init__(self, path: Path, dtype: np.dtype, rows: int) -> None:
        self.path, self.dtype, self.rows = Path(path), np.dtype(dtype), rows
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)

    def __getstate__(self) -> dict[str, object]:  # a worker process opens its own
        return {**self.__dict__, "_fd": None}

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows ``index`` (any order) as ``(x_cat, x_num, x_dense, y)``."""
        width, fd = self.dtype.itemsize, self._file()
        data = b"".join(os.pread(fd, width, int(i) * width) for i in index.tolist())
        return _columns(np.frombuffer(data, dtype=self.dtype))

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, ...]:
        """Rows ``start..stop-1`` in one read."""
        width = self.dtype.itemsize
        data = os.pread(self._file(), (stop - start) * width, start * width)
        return _columns(np.frombuffer(data, dtype=self.dtype))


def _columns(rows: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(
        torch.from_numpy(np.ascontiguousarray(rows[name]))
        for name in ("x_cat", "x_num", "x_dense", "y")
    )


class StoredRows(_BatchFetchDataset):
    """A :class:`RowStore`'s rows as the DP loaders read them: ``len`` and ``gather``.

    The tensors it holds are the data's views (for ``len`` and what checks shapes);
    batches are read from the store, so the resident set holds one batch.
    """

    def __init__(self, data: EncodedData, store: RowStore) -> None:
        super().__init__(*data.tensors())
        self.store = store

    def __getitems__(self, indices: list[int] | torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.gather(torch.as_tensor(indices, dtype=torch.long))

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.store.gather(index)


def _already_collated(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


class _Issues:
    def __init__(
        self, file: str, policy: BadRowPolicy, keep: int, spec_columns: frozenset[str]
    ) -> None:
        self.file, self.policy, self.keep = file, policy, keep
        self.spec_columns = spec_columns
        self.samples: list[RowIssue] = []
        self.count = 0

    def add(self, rows: np.ndarray, column: str, reason: str, problem: DataProblem) -> None:
        for r in rows[: max(self.keep - len(self.samples), 0)]:
            self.samples.append(RowIssue(int(r) + 1, column, reason))
        self.count += len(rows)
        if len(rows) and self.policy is BadRowPolicy.REJECT:
            first = RowIssue(int(rows[0]) + 1, column, reason)
            raise DataFileError(
                f"{first.describe(self.file)} ({len(rows)} such rows). The file is rejected "
                "(bad_rows = 'reject'); fix the file or set bad_rows = 'skip' to drop bad rows.",
                file=self.file,
                problem=problem,
                row=first.row,
                column=column if column in self.spec_columns else None,
            )


def _as_strings(column: pa.ChunkedArray) -> list[str | None]:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.to_pylist()
    return [None if v is None else str(v) for v in column.to_pylist()]


def _parse_label(column: pa.ChunkedArray, spec: FeatureSpec, issues: _Offset) -> np.ndarray:
    values = _as_strings(column)
    y = np.full(len(values), np.nan, dtype=np.float32)
    for i, v in enumerate(values):
        text = None if v is None else v.strip()
        if text in spec.positive_labels:
            y[i] = 1.0
        elif text in _NEGATIVE_LABELS:
            y[i] = 0.0
    bad = np.flatnonzero(np.isnan(y))
    if len(bad):
        sample = values[bad[0]]
        issues.add(
            bad,
            spec.label,
            f"label must be 0 or 1 (or a positive label of the spec), got {sample!r}",
            DataProblem.BAD_LABEL,
        )
    return y


def _parse_numeric(column: pa.ChunkedArray, name: str, issues: _Offset) -> np.ndarray:
    """Float values with NaN for missing; unparseable or infinite values are issues."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        x = column.to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        try:
            x = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        except pa.ArrowInvalid:
            raw = _as_strings(column)
            x = np.full(len(raw), np.nan)
            bad: list[int] = []
            for i, v in enumerate(raw):
                if v is None or not v.strip():
                    continue
                try:
                    x[i] = float(v)
                except ValueError:
                    bad.append(i)
            if bad:
                issues.add(
                    np.array(bad), name, f"not a number: {raw[bad[0]]!r}", DataProblem.NOT_A_NUMBER
                )
                x[bad] = np.inf  # marked bad below, whatever the policy
                return _mark_inf(x, name, issues, already_reported=set(bad))
    return _mark_inf(x, name, issues, already_reported=set())


def _mark_inf(x: np.ndarray, name: str, issues: _Offset, already_reported: set[int]) -> np.ndarray:
    inf = np.flatnonzero(np.isinf(x))
    fresh = np.array([i for i in inf if i not in already_reported], dtype=np.int64)
    if len(fresh):
        issues.add(fresh, name, "value is infinite", DataProblem.INFINITE_VALUE)
    return x


def _parse_embedding(column: pa.ChunkedArray, feature: EmbeddingFeature, issues: _Offset):
    values = column.to_pylist()
    out = np.zeros((len(values), feature.dim), dtype=np.float32)
    bad_rows: list[int] = []
    reason = ""
    for i, v in enumerate(values):
        if v is None:
            continue  # missing embedding: zeros
        try:
            vec = [float(t) for t in v.split()] if isinstance(v, str) else [float(t) for t in v]
        except (TypeError, ValueError):
            bad_rows.append(i)
            reason = reason or "embedding must be numbers separated by spaces"
            continue
        if len(vec) != feature.dim or not all(math.isfinite(t) for t in vec):
            bad_rows.append(i)
            reason = reason or f"embedding must have {feature.dim} finite values, got {len(vec)}"
            continue
        out[i] = vec
    if bad_rows:
        issues.add(np.array(bad_rows), feature.name, reason, DataProblem.BAD_EMBEDDING)
    return out, np.array(bad_rows, dtype=np.int64)


class UserKeyCollision(Exception):
    """Two people's user keys share a 64-bit id in a file read in blocks; the caller
    reads the file whole instead, where exact per-file ids replace the hashes."""


class UserKeyCheck:
    """Collision check of user ids across the blocks of one file: each distinct key's
    id and a second, independent 64-bit hash (16 bytes per distinct key per block)."""

    def __init__(self) -> None:
        self._pairs: list[np.ndarray] = []

    def add(self, ids: np.ndarray, keys: list[str | None], salt: bytes) -> None:
        if len(np.unique(ids)) < len(ids):
            raise UserKeyCollision("user-key hash collision within one block")
        second = np.array([_key_hash(salt, v, b"\x01") for v in keys], dtype=np.int64)
        self._pairs.append(np.stack([ids, second], axis=1))

    def finish(self) -> None:
        if not self._pairs:
            return
        pairs = np.unique(np.concatenate(self._pairs), axis=0)
        self._pairs = []
        if len(np.unique(pairs[:, 0])) < len(pairs):
            raise UserKeyCollision("user-key hash collision across blocks")


def _key_hash(salt: bytes, key: str | None, tag: bytes) -> int:
    digest = hashlib.blake2b(salt + tag + (key or "").encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def user_ids(
    table: pa.Table, spec: FeatureSpec, *, check: UserKeyCheck | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(int64 user id per row, bool missing per row) from the spec's ``user_key`` columns.

    The id is the first 8 bytes of ``blake2b(salt, cells joined by U+001F)`` (a
    separator inside a cell escaped): stable across files and runs of one federation,
    so a person's rows in two files are one user. Each distinct key is hashed once; on
    a hash collision the file's exact codes are used instead, or, for one block of a
    file (``check`` given), :class:`UserKeyCollision` is raised.
    """
    cells = [pc.cast(table.column(c), pa.string()) for c in spec.user_key]
    missing = np.zeros(table.num_rows, dtype=bool)
    for column in cells:
        missing |= _empty(column)
    # escape the separator, so ("a\x1fb", "c") and ("a", "b\x1fc") stay two people
    escaped = [
        pc.replace_substring(pc.replace_substring(c, "\\", "\\\\"), "\x1f", "\\u001f")
        for c in cells
    ]
    joined = pc.binary_join_element_wise(*escaped, "\x1f").combine_chunks().dictionary_encode()
    salt = spec.salt.encode()
    keys = joined.dictionary.to_pylist()
    hashed = np.array([_key_hash(salt, v, b"\x00") for v in keys], dtype=np.int64)
    if check is not None:
        check.add(hashed, keys, salt)
    elif len(np.unique(hashed)) < len(hashed):
        # two people on one 64-bit hash would be clipped as one unit (sensitivity 2C):
        # fall back to this file's exact codes, which never leave the node either
        logger.warning("user-key hash collision in this file; using exact per-file user ids")
        hashed = np.arange(len(hashed), dtype=np.int64)
    codes = joined.indices.fill_null(0).to_numpy(zero_copy_only=False)
    ids = hashed[codes] if len(hashed) else np.zeros(table.num_rows, dtype=np.int64)
    return ids.astype(np.int64), missing


@dataclass
class _Encoded:
    """One table's rows encoded, before bad rows are dropped (``bad`` marks them)."""

    x_cat: np.ndarray
    x_num: np.ndarray
    x_dense: np.ndarray
    y: np.ndarray
    users: np.ndarray | None
    bad: np.ndarray

    def kept(self, report: LoadReport | None) -> EncodedData:
        keep = ~self.bad
        return EncodedData(
            np.ascontiguousarray(self.x_cat[keep]),
            np.ascontiguousarray(self.x_num[keep]),
            np.ascontiguousarray(self.x_dense[keep]),
            np.ascontiguousarray(self.y[keep]),
            report,
            None if self.users is None else np.ascontiguousarray(self.users[keep]),
        )


class LogEncoder:
    """Validates and encodes a partner log's tables, one after another, as one file.

    Row numbers in issues and errors count from the file's first data row whatever
    the table the row came in, so a file read whole (:func:`read_partner_log`) or in
    blocks (:mod:`fedctr.models.logs.cache`) reports the same rows; the counts add up
    in :meth:`report`.
    """

    def __init__(
        self,
        path: Path,
        spec: FeatureSpec,
        *,
        policy: BadRowPolicy = BadRowPolicy.SKIP,
        max_issue_samples: int = 20,
        users: bool = True,
        user_check: UserKeyCheck | None = None,
    ) -> None:
        self.path, self.spec, self.users = path, spec, users
        self._user_check = user_check
        self._issues = _Issues(
            str(path), BadRowPolicy(policy), max_issue_samples, frozenset(spec.read_columns)
        )
        self.rows_read = 0
        self.rows_kept = 0

    def encode(self, read: ReadResult) -> _Encoded:
        """Encode one table of the file (its rows follow those of earlier tables)."""
        path, spec, table = self.path, self.spec, read.table
        issues = _Offset(self._issues, self.rows_read)
        n = table.num_rows
        bad = np.zeros(n, dtype=bool)
        for problem in read.problems:  # rows the format reader could not lay out
            issues.add(np.array([problem.row]), problem.column, problem.reason, problem.problem)
            bad[problem.row] = True

        y = _parse_label(table.column(spec.label), spec, issues)
        bad |= np.isnan(y)

        x_num = np.zeros((n, spec.num_numeric), dtype=np.float32)
        for j, feature in enumerate(spec.numeric):
            raw = _parse_numeric(table.column(feature.name), feature.name, issues)
            bad |= np.isinf(raw)
            x_num[:, j] = transform_numeric(np.where(np.isinf(raw), np.nan, raw), feature=feature)

        x_cat = np.zeros((n, spec.num_categorical), dtype=np.int64)
        for j, feature in enumerate(spec.categorical):
            try:
                x_cat[:, j] = hash_column(
                    table.column(feature.name), feature=feature, salt=spec.salt
                )
            except TypeError as exc:
                raise DataFileError(
                    f"{path}: column '{feature.name}': {exc}",
                    file=str(path),
                    problem=DataProblem.BAD_CATEGORY,
                    column=feature.name,
                ) from exc

        dense_parts = []
        for feature in spec.embedding:
            values, bad_rows = _parse_embedding(table.column(feature.name), feature, issues)
            bad[bad_rows] = True
            dense_parts.append(values)
        x_dense = (
            np.concatenate(dense_parts, axis=1) if dense_parts else np.zeros((n, 0), np.float32)
        )

        row_users = None
        if self.users and spec.user_key:
            row_users, no_user = user_ids(table, spec, check=self._user_check)
            for column in spec.user_key:
                rows = np.flatnonzero(no_user & _empty(table.column(column)))
                if len(rows):
                    issues.add(
                        rows,
                        column,
                        "user-key cell is empty: the row names no person, so user-level DP "
                        "cannot protect it",
                        DataProblem.MISSING_USER_KEY,
                    )
            bad |= no_user
        self.rows_read += n
        self.rows_kept += int((~bad).sum())
        return _Encoded(x_cat, x_num, x_dense, y, row_users, bad)

    def report(self) -> LoadReport:
        """What reading the file did; refuses an empty file or one with no good row."""
        path = self.path
        if self._user_check is not None:
            self._user_check.finish()
        if self.rows_read == 0:
            raise DataFileError(
                f"{path}: the file has no data rows", file=str(path), problem=DataProblem.EMPTY_FILE
            )
        report = LoadReport(
            file=str(path),
            rows_read=self.rows_read,
            rows_kept=self.rows_kept,
            issues=tuple(self._issues.samples),
            issue_count=self._issues.count,
        )
        if report.rows_kept == 0:
            raise DataFileError(
                f"{path}: every row is bad ({report.summary()})",
                file=str(path),
                problem=DataProblem.ALL_ROWS_BAD,
            )
        if report.rows_skipped:
            logger.warning("%s", report.summary())
        return report


class _Offset:
    """Issues of one table, numbered from the file's first data row."""

    def __init__(self, issues: _Issues, offset: int) -> None:
        self._issues, self._offset = issues, offset

    def add(self, rows: np.ndarray, column: str, reason: str, problem: DataProblem) -> None:
        self._issues.add(np.asarray(rows, dtype=np.int64) + self._offset, column, reason, problem)


def read_partner_log(
    path: str | Path,
    spec: FeatureSpec,
    *,
    policy: BadRowPolicy = BadRowPolicy.SKIP,
    max_issue_samples: int = 20,
    users: bool = True,
) -> EncodedData:
    """Read and encode one conversion log; raises :class:`DataFileError` on a file-level
    problem or (policy ``reject``) on the first bad value. ``users``: read the spec's
    user key (rows without one are bad rows); ``False`` for a partner whose unit of
    privacy is one example, which needs no user."""
    path = Path(path)
    encoder = LogEncoder(
        path, spec, policy=policy, max_issue_samples=max_issue_samples, users=users
    )
    read = read_spec_columns(path, spec, user_key=users)
    if read.table.num_rows == 0:
        encoder.report()  # raises: no data rows
    encoded = encoder.encode(read)
    return encoded.kept(encoder.report())


def _empty(column: pa.ChunkedArray) -> np.ndarray:
    text = pc.cast(column, pa.string())
    empty = pc.equal(pc.utf8_trim_whitespace(text), "").fill_null(True)
    return empty.to_numpy(zero_copy_only=False)


__all__ = [
    "BadRowPolicy",
    "EncodedData",
    "LoadReport",
    "LogEncoder",
    "RowIssue",
    "RowStore",
    "StoredRows",
    "UserKeyCheck",
    "UserKeyCollision",
    "read_partner_log",
    "user_ids",
]
