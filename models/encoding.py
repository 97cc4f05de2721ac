"""Turn raw column values into model inputs, exactly as the spec says.

Categoricals are hashed with a keyed BLAKE2b (key = the federation salt) into
``1..buckets-1``; bucket 0 means missing. Hashing unique values only keeps it fast
on large files. The same functions serve partner training and the scoring API so
a value always lands in the same bucket.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fedctr.models.spec import CategoricalFeature, NumericFeature


def _salt_key(salt: str) -> bytes:
    # BLAKE2b keys are at most 64 bytes; derive a fixed-size key from any salt.
    return hashlib.sha256(salt.encode()).digest()


def hash_value(value: str, *, feature: CategoricalFeature, salt: str) -> int:
    """Bucket of one canonical string value (empty string: bucket 0)."""
    if value == "":
        return 0
    digest = hashlib.blake2b(
        f"{feature.name}\x1f{value}".encode(), key=_salt_key(salt), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") % (feature.buckets - 1) + 1


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


def _canonical_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    typ = column.type
    if pa.types.is_dictionary(typ):
        column = column.cast(typ.value_type)
        typ = column.type
    if pa.types.is_integer(typ) or pa.types.is_boolean(typ):
        return pc.cast(column, pa.string())
    if pa.types.is_floating(typ):
        # Rare: categoricals read as doubles (ints with blanks). Go value by value.
        return pa.array([canonical_scalar(v) for v in column.to_pylist()], pa.string())
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pc.utf8_trim_whitespace(column.cast(pa.string()))
    raise TypeError(f"categorical column of type {typ} cannot be hashed")


def hash_column(
    column: pa.Array | pa.ChunkedArray, *, feature: CategoricalFeature, salt: str
) -> np.ndarray:
    """Bucket of every row of a column (int64), hashing each distinct value once."""
    strings = _canonical_strings(column)
    encoded = pc.dictionary_encode(strings)
    uniques = encoded.dictionary.to_pylist()
    table = np.fromiter(
        (hash_value(u or "", feature=feature, salt=salt) for u in uniques),
        dtype=np.int64,
        count=len(uniques),
    )
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    nulls = np.asarray(encoded.indices.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out = np.zeros(len(strings), dtype=np.int64)
    valid = ~nulls
    out[valid] = table[indices[valid].astype(np.int64)]
    return out


def transform_numeric(values: np.ndarray, *, feature: NumericFeature) -> np.ndarray:
    """Apply the spec's fixed transform and clip; NaN (missing) becomes ``fill``."""
    x = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(x)
    x = np.where(missing, 0.0, x)
    if feature.transform == "log1p":
        x = np.sign(x) * np.log1p(np.abs(x))
    elif feature.transform == "standard":
        x = (x - feature.mean) / feature.std
    x = np.clip(x, feature.clip_min, feature.clip_max)
    x[missing] = feature.fill
    return x.astype(np.float32)


__all__ = ["canonical_scalar", "hash_column", "hash_value", "transform_numeric"]
