"""Raw feature values to model inputs: the one definition training and scoring share.

Categoricals are hashed with a keyed BLAKE2b (key = SHA-256 of the federation salt)
into ``1..buckets-1``; bucket 0 means missing. Numerics get the spec's fixed
transform, then the clip, then ``fill`` where missing. A value must land in the
same bucket, and a number on the same float32, whether a partner trains on it or
the scoring service scores it, so both sides use this module and nothing else:

- the **batch path** works on columns: :meth:`FieldHasher.column` hashes a pyarrow
  column, each distinct value once (partner training through
  :func:`fedctr.models.logs.reader.read_partner_log`, and the scoring service's Arrow
  batches); :meth:`NumericTransforms.columns` transforms a float64 ``[N, D]`` array;
- the **single-row path** works on one value at a time in plain Python
  (:meth:`FieldHasher.one`, :meth:`NumericTransforms.row`, and
  :meth:`FeatureEncoder.encode_one` over them): a scoring request carries one row,
  where the batch path's numpy and pyarrow set-up would cost more than the model.

``tests/models/test_encoding_parity.py`` checks that both paths give the same model
inputs for any spec-valid row.

Privacy: values are held only for the duration of a call. The cross-call cache of
hashed buckets keeps **context-scope** values only (ad ids, placements); user-scope
values are never kept beyond the call that carried them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedctr.models.spec import CategoricalFeature, FeatureSpec, NumericFeature


def canonical_scalar(value: object) -> str:
    """Canonical string of one raw value so CSV, Parquet and JSON agree.

    Integral numbers become their integer digits (``5``, ``5.0`` and ``"5"`` are
    the same category); None, NaN and blanks become "" (missing).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


def _is_text(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def _check_categorical_type(typ: pa.DataType) -> None:
    """Raise ``TypeError`` unless a category can be read from an Arrow column of ``typ``."""
    value_type = typ.value_type if pa.types.is_dictionary(typ) else typ
    if not (
        _is_text(value_type)
        or pa.types.is_integer(value_type)
        or pa.types.is_boolean(value_type)
        or pa.types.is_floating(value_type)
    ):
        raise TypeError(f"categorical column of type {value_type} cannot be hashed")


def _canonical_keys(values: pa.Array) -> list[str]:
    """:func:`canonical_scalar` of every value of an Arrow array, vectorised where it can be.

    A boolean column keeps Arrow's ``"true"``/``"false"`` (models trained on Parquet
    booleans hashed those), unlike a Python ``True``; neither request path accepts one.
    """
    typ = values.type
    if pa.types.is_floating(typ):
        # Rare: categoricals read as doubles (ints with blanks). Go value by value.
        return [canonical_scalar(v) for v in values.to_pylist()]
    if _is_text(typ):
        strings = pc.utf8_trim_whitespace(values.cast(pa.string()))
    else:
        strings = pc.cast(values, pa.string())
    return [v or "" for v in strings.to_pylist()]


class FieldHasher:
    """Buckets of one categorical field: the keyed prefix is absorbed once, copied per value.

    ``cache_size`` > 0 keeps buckets of raw values across calls (up to about that many,
    then it starts afresh); give it to context-scope fields only, so that user-scope
    values never outlive the call that carried them.
    """

    def __init__(self, feature: CategoricalFeature, salt: str, *, cache_size: int = 0) -> None:
        # BLAKE2b keys are at most 64 bytes; derive a fixed-size key from any salt.
        key = hashlib.sha256(salt.encode()).digest()
        self._base = hashlib.blake2b(key=key, digest_size=8)
        self._base.update(f"{feature.name}\x1f".encode())
        self._modulus = feature.buckets - 1
        self._cache: dict[Any, int] | None = {} if cache_size > 0 else None
        self._cache_size = cache_size

    def hash_text(self, text: str) -> int:
        """Bucket of one canonical string (empty string: bucket 0)."""
        if text == "":
            return 0
        h = self._base.copy()
        h.update(text.encode())
        return int.from_bytes(h.digest(), "little") % self._modulus + 1

    def bucket(self, value: Any) -> int:
        """Bucket of one raw value (through :func:`canonical_scalar`), never cached."""
        return self.hash_text(canonical_scalar(value))

    def one(self, value: Any) -> int:
        """Bucket of a single value (through the cross-call cache when this field has one)."""
        cache = self._cache
        if cache is None:
            return self.bucket(value)
        b = cache.get(value)
        if b is None:
            if len(cache) > self._cache_size:
                cache.clear()
            b = cache[value] = self.bucket(value)
        return b

    def buckets(self, values: Sequence[Any]) -> list[int]:
        """Buckets of many raw values; each distinct value is hashed once."""
        if self._cache is None:
            cache: dict[Any, int] = {}  # no cross-call cache: dedupe within this call only
        else:
            cache = self._cache
            if len(cache) > self._cache_size:
                cache.clear()
        out = []
        for v in values:
            b = cache.get(v)
            if b is None:
                b = cache[v] = self.bucket(v)
            out.append(b)
        return out

    def column(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Bucket of every row of an Arrow column (int64); nulls are bucket 0.

        The column is dictionary-encoded (a dictionary column is used as it is), so
        each distinct value is canonicalised and hashed once: what makes large files
        fast. Raises ``TypeError`` for a column type a category cannot have.
        """
        _check_categorical_type(column.type)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
        keys = _canonical_keys(encoded.dictionary)
        out = np.zeros(len(encoded), dtype=np.int64)
        if not keys:  # every row null
            return out
        table = np.asarray(self.buckets(keys), dtype=np.int64)
        indices = encoded.indices
        valid = np.asarray(indices.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        rows = indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        out[valid] = table[rows[valid]]
        return out


class NumericTransforms:
    """The spec's fixed transforms of some numeric columns, vectorised and per value.

    ``log1p`` is sign-preserving (``sign(x) * log1p(|x|)``), ``standard`` is
    ``(x - mean) / std``, then the clip; a missing value becomes ``fill``. Both methods
    do this arithmetic in float64; the model's input is its float32 rounding.
    """

    def __init__(self, features: Sequence[NumericFeature]) -> None:
        self._is_log = np.array([f.transform == "log1p" for f in features], dtype=bool)
        self._is_std = np.array([f.transform == "standard" for f in features], dtype=bool)
        self._mean = np.array([f.mean for f in features], dtype=np.float64)
        self._std = np.array([f.std for f in features], dtype=np.float64)
        self._lo = np.array([f.clip_min for f in features], dtype=np.float64)
        self._hi = np.array([f.clip_max for f in features], dtype=np.float64)
        self._fill = np.array([f.fill for f in features], dtype=np.float64)
        self._user = np.array([f.scope == "user" for f in features], dtype=bool)
        self._one = [
            (f.name, f.transform, f.mean, f.std, f.clip_min, f.clip_max, f.fill, f.scope == "user")
            for f in features
        ]

    def columns(self, raw: np.ndarray, *, personalized: bool = True) -> np.ndarray:
        """float32 ``[N, D]`` of float64 ``[N, D]`` values (non-finite: missing);
        ``personalized=False`` treats every user-scope column as missing."""
        missing = ~np.isfinite(raw)
        if not personalized:
            missing |= self._user
        x = np.where(missing, 0.0, raw)
        # Only the transforms in use are computed: one column (training) costs what it did.
        if self._is_log.all():
            x = np.sign(x) * np.log1p(np.abs(x))
        elif self._is_std.all():
            x = (x - self._mean) / self._std
        elif self._is_log.any() or self._is_std.any():
            logged = np.sign(x) * np.log1p(np.abs(x))
            standard = (x - self._mean) / self._std
            x = np.where(self._is_log, logged, np.where(self._is_std, standard, x))
        x = np.clip(x, self._lo, self._hi)
        return np.where(missing, self._fill, x).astype(np.float32)

    def row(self, row: Mapping[str, Any], personalized: bool, /) -> list[float]:
        """One row's values in plain Python (float64; the caller rounds them to float32).
        An absent, null or non-finite value is missing."""
        isfinite, log1p = math.isfinite, math.log1p  # locals: this runs per request
        out = []
        for name, transform, mean, std, lo, hi, fill, is_user in self._one:
            x = row.get(name)
            if x is None or (is_user and not personalized) or not isfinite(x):
                out.append(fill)
                continue
            if transform == "log1p":
                x = log1p(x) if x > 0 else (-log1p(-x) if x < 0 else 0.0)
            elif transform == "standard":
                x = (x - mean) / std
            out.append(lo if x < lo else (hi if x > hi else x))
        return out


def hash_value(value: str, *, feature: CategoricalFeature, salt: str) -> int:
    """Bucket of one canonical string value (empty string: bucket 0)."""
    return FieldHasher(feature, salt).hash_text(value)


def hash_column(
    column: pa.Array | pa.ChunkedArray, *, feature: CategoricalFeature, salt: str
) -> np.ndarray:
    """Bucket of every row of a column (int64), hashing each distinct value once."""
    return FieldHasher(feature, salt).column(column)


def transform_numeric(values: np.ndarray, *, feature: NumericFeature) -> np.ndarray:
    """Apply the spec's fixed transform and clip to one column; NaN (missing) becomes ``fill``."""
    x = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    return NumericTransforms((feature,)).columns(x).reshape(-1)


@dataclass(frozen=True)
class EncodedBatch:
    """Model inputs: bucket ids ``[N, F]``, numerics ``[N, D]``, dense vectors ``[N, E]``."""

    x_cat: np.ndarray
    x_num: np.ndarray
    x_dense: np.ndarray


class FeatureEncoder:
    """One spec's encoder: rows keyed by spec column names (validated upstream), one at
    a time or in batches, and whole Arrow columns.

    ``personalized=False`` encodes every user-scope feature as missing.
    ``context_cache_size`` bounds the cross-call bucket cache of each context-scope
    field (0: none, e.g. when reading a training file once).
    """

    def __init__(self, spec: FeatureSpec, *, context_cache_size: int = 100_000) -> None:
        self.spec = spec
        self._hashers = [
            FieldHasher(f, spec.salt, cache_size=context_cache_size if f.scope == "context" else 0)
            for f in spec.categorical
        ]
        self._cats = [
            (f.name, hasher, f.scope == "user")
            for f, hasher in zip(spec.categorical, self._hashers, strict=True)
        ]
        self.numeric = NumericTransforms(spec.numeric)
        # Bound methods, looked up once: encode_one is the scoring service's latency path.
        self._cats_one = [(name, hasher.one, is_user) for name, hasher, is_user in self._cats]
        self._numeric_row = self.numeric.row
        self._num_names = [f.name for f in spec.numeric]
        self._emb = [(f.name, f.dim, f.scope == "user") for f in spec.embedding]
        self._dense_dim = spec.dense_dim()

    def categorical_column(self, field: int, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Buckets (int64) of every row of an Arrow column of categorical field number
        ``field``; see :meth:`FieldHasher.column`."""
        return self._hashers[field].column(column)

    def transform_numeric(self, raw: np.ndarray, *, personalized: bool) -> np.ndarray:
        """All numeric columns at once: float64 ``[N, D]`` (NaN: missing) to float32."""
        return self.numeric.columns(raw, personalized=personalized)

    def encode_one(
        self, row: Mapping[str, Any], *, personalized: bool
    ) -> tuple[list[int], list[float], list[float]]:
        """One row in plain Python: bucket ids, numerics (float64, to be rounded to float32 by
        the caller) and the concatenated dense vectors; the same arithmetic as the batch path."""
        cats = [
            0 if is_user and not personalized else bucket(row.get(name))
            for name, bucket, is_user in self._cats_one
        ]
        nums = self._numeric_row(row, personalized)
        dense: list[float] = []
        for name, dim, is_user in self._emb:
            v = row.get(name) if personalized or not is_user else None
            dense.extend([0.0] * dim if v is None else v)
        return cats, nums, dense

    def _encode_one(self, row: Mapping[str, Any], personalized: bool) -> EncodedBatch:
        cats, nums, dense = self.encode_one(row, personalized=personalized)
        return EncodedBatch(
            x_cat=np.array([cats], dtype=np.int64).reshape(1, len(cats)),
            x_num=np.array([nums], dtype=np.float32).reshape(1, len(nums)),
            x_dense=np.array([dense], dtype=np.float32).reshape(1, len(dense)),
        )

    def encode(self, rows: Sequence[Mapping[str, Any]], *, personalized: bool) -> EncodedBatch:
        """Encode ``rows`` (absent or null values are missing)."""
        n = len(rows)
        if n == 1:
            return self._encode_one(rows[0], personalized)
        if self._cats:
            cols = [
                [0] * n
                if is_user and not personalized
                else hasher.buckets([r.get(name) for r in rows])
                for name, hasher, is_user in self._cats
            ]
            x_cat = np.array(cols, dtype=np.int64).T.reshape(n, len(cols))
        else:
            x_cat = np.zeros((n, 0), dtype=np.int64)
        if self._num_names:
            raw = np.array(
                [[r.get(name) for name in self._num_names] for r in rows], dtype=np.float64
            ).reshape(n, len(self._num_names))
            x_num = self.numeric.columns(raw, personalized=personalized)
        else:
            x_num = np.zeros((n, 0), dtype=np.float32)
        x_dense = np.zeros((n, self._dense_dim), dtype=np.float32)
        start = 0
        for name, dim, is_user in self._emb:
            if personalized or not is_user:
                values = [r.get(name) for r in rows]
                present = [i for i, v in enumerate(values) if v is not None]
                if len(present) == n:
                    x_dense[:, start : start + dim] = np.array(values, dtype=np.float32)
                elif present:
                    x_dense[present, start : start + dim] = np.array(
                        [values[i] for i in present], dtype=np.float32
                    )
            start += dim
        return EncodedBatch(x_cat=x_cat, x_num=x_num, x_dense=x_dense)


__all__ = [
    "EncodedBatch",
    "FeatureEncoder",
    "FieldHasher",
    "NumericTransforms",
    "canonical_scalar",
    "hash_column",
    "hash_value",
    "transform_numeric",
]
