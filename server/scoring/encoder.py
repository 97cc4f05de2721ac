"""Request rows to model inputs, bit-identical to the training-time encoding.

The training pipeline hashes whole columns (``fedctr.models.encoding.hash_column``); a
scoring request carries one or a few rows, where that path's pyarrow set-up would
cost more than the model. This encoder does the same arithmetic per value:
keyed BLAKE2b states are prepared once per field and copied per value, numeric
transforms run on one ``[N, D]`` array, and ``personalized=False`` masks every
user-scope feature to "missing".

Privacy: values are held only for the duration of a call. The cross-request
cache of hashed buckets keeps **context-scope** values only (ad ids, placements);
user-scope values are never kept beyond the request that carried them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fedctr.models.encoding import canonical_scalar
from fedctr.models.spec import FeatureSpec


@dataclass(frozen=True)
class EncodedBatch:
    """Model inputs: bucket ids ``[N, F]``, numerics ``[N, D]``, dense vectors ``[N, E]``."""

    x_cat: np.ndarray
    x_num: np.ndarray
    x_dense: np.ndarray


class _FieldHasher:
    """Buckets of one categorical field: ``hash_value`` with its keyed prefix pre-absorbed."""

    def __init__(self, name: str, buckets: int, salt: str, *, cache_size: int) -> None:
        key = hashlib.sha256(salt.encode()).digest()
        self._base = hashlib.blake2b(key=key, digest_size=8)
        self._base.update(f"{name}\x1f".encode())
        self._modulus = buckets - 1
        self._cache: dict[Any, int] | None = {} if cache_size > 0 else None
        self._cache_size = cache_size

    def bucket(self, value: Any) -> int:
        text = canonical_scalar(value)
        if text == "":
            return 0
        h = self._base.copy()
        h.update(text.encode())
        return int.from_bytes(h.digest(), "little") % self._modulus + 1

    def one(self, value: Any) -> int:
        """Bucket of a single value (through the context cache when this field has one)."""
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
        """Buckets of many values; each distinct value is hashed once."""
        if self._cache is None:
            cache: dict[Any, int] = {}  # user scope: dedupe within this call only
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


class FeatureEncoder:
    """Encodes rows keyed by spec column names (validated upstream) for one spec."""

    def __init__(self, spec: FeatureSpec, *, context_cache_size: int = 100_000) -> None:
        self.spec = spec
        self._cat_names = [f.name for f in spec.categorical]
        self._hashers = [
            _FieldHasher(
                f.name,
                f.buckets,
                spec.salt,
                cache_size=context_cache_size if f.scope == "context" else 0,
            )
            for f in spec.categorical
        ]
        self._cat_user = np.array([f.scope == "user" for f in spec.categorical], dtype=bool)
        num = spec.numeric
        self._num_names = [f.name for f in num]
        self._is_log = np.array([f.transform == "log1p" for f in num], dtype=bool)
        self._is_std = np.array([f.transform == "standard" for f in num], dtype=bool)
        self._mean = np.array([f.mean for f in num], dtype=np.float64)
        self._std = np.array([f.std for f in num], dtype=np.float64)
        self._lo = np.array([f.clip_min for f in num], dtype=np.float64)
        self._hi = np.array([f.clip_max for f in num], dtype=np.float64)
        self._fill = np.array([f.fill for f in num], dtype=np.float64)
        self._num_user = np.array([f.scope == "user" for f in num], dtype=bool)
        self._emb = [(f.name, f.dim, f.scope == "user") for f in spec.embedding]
        self._cats_one = list(
            zip(self._cat_names, self._hashers, self._cat_user.tolist(), strict=True)
        )
        self._nums_one = [
            (f.name, f.transform, f.mean, f.std, f.clip_min, f.clip_max, f.fill, f.scope == "user")
            for f in num
        ]
        self._dense_dim = spec.dense_dim()

    def bucket_distinct(self, field: int, keys: Sequence[str] | Sequence[int]) -> list[int]:
        """Buckets of distinct canonical keys of categorical field number ``field``."""
        return self._hashers[field].buckets(keys)

    def transform_numeric(self, raw: np.ndarray, *, personalized: bool) -> np.ndarray:
        """``fedctr.models.encoding.transform_numeric`` for all numeric columns at once
        (float64 math)."""
        missing = ~np.isfinite(raw)
        if not personalized:
            missing |= self._num_user
        x = np.where(missing, 0.0, raw)
        logged = np.sign(x) * np.log1p(np.abs(x))
        standard = (x - self._mean) / self._std
        x = np.where(self._is_log, logged, np.where(self._is_std, standard, x))
        x = np.clip(x, self._lo, self._hi)
        return np.where(missing, self._fill, x).astype(np.float32)

    def encode_one(
        self, row: Mapping[str, Any], *, personalized: bool
    ) -> tuple[list[int], list[float], list[float]]:
        """One row in plain Python: bucket ids, numerics (float64, to be rounded to float32 by
        the caller) and the concatenated dense vectors; the same arithmetic as the batch path."""
        cats = [
            0 if is_user and not personalized else hasher.one(row.get(name))
            for name, hasher, is_user in self._cats_one
        ]
        nums = []
        for name, transform, mean, std, lo, hi, fill, is_user in self._nums_one:
            x = row.get(name)
            if x is None or (is_user and not personalized) or not math.isfinite(x):
                nums.append(fill)
                continue
            if transform == "log1p":
                x = math.log1p(x) if x > 0 else (-math.log1p(-x) if x < 0 else 0.0)
            elif transform == "standard":
                x = (x - mean) / std
            nums.append(lo if x < lo else (hi if x > hi else x))
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
        if self._hashers:
            cols = []
            for name, hasher, is_user in zip(
                self._cat_names, self._hashers, self._cat_user, strict=True
            ):
                if is_user and not personalized:
                    cols.append([0] * n)
                else:
                    cols.append(hasher.buckets([r.get(name) for r in rows]))
            x_cat = np.array(cols, dtype=np.int64).T.reshape(n, len(cols))
        else:
            x_cat = np.zeros((n, 0), dtype=np.int64)
        if self._num_names:
            raw = np.array(
                [[r.get(name) for name in self._num_names] for r in rows], dtype=np.float64
            ).reshape(n, len(self._num_names))
            x_num = self.transform_numeric(raw, personalized=personalized)
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


__all__ = ["EncodedBatch", "FeatureEncoder"]
