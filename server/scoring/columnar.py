"""Arrow IPC batch bodies to model inputs, column by column.

A JSON batch spends most of its time parsing: a demo-spec row carries 32
embedding floats as text, ~750 bytes, and every value becomes a Python object
before it is validated. Bulk callers (a bidder scoring a candidate set, an
offline re-ranker) usually hold the rows as columns already, so the batch
route also takes an Arrow IPC stream: numbers arrive as machine floats and are
read without a copy, and each distinct category is hashed once.

The rules are the JSON body's (:mod:`fedctr.server.scoring.api.schemas`), applied per column:
every spec column present (user-scope ones may be left out when not
personalised), no unknown column, categoricals as strings (at most
``MAX_CATEGORY_CHARS``) or integers, numerics finite, embeddings lists of exactly
``dim`` finite numbers; nulls mean "missing". A violation raises
:class:`ColumnarBodyError` naming the column (and the first bad row); values are
never echoed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedctr.models.encoding import EncodedBatch, FeatureEncoder
from fedctr.models.spec import FeatureSpec

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_CATEGORY_CHARS = 256  # JSON rows (fedctr.server.scoring.api.schemas) share this limit


class ColumnarBodyError(ValueError):
    """An Arrow batch body breaks a rule; ``column`` is None for the body as a whole."""

    def __init__(self, column: str | None, message: str, *, kind: str = "value_error") -> None:
        super().__init__(message)
        self.column = column
        self.kind = kind


def _first_true(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _valid(col: pa.Array) -> np.ndarray | None:
    """Which rows are not null (None when none is)."""
    if not col.null_count:
        return None
    return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


class ArrowBatchDecoder:
    """Reads one spec's Arrow batches; shares the JSON path's :class:`FeatureEncoder`."""

    def __init__(self, spec: FeatureSpec, encoder: FeatureEncoder) -> None:
        self.spec = spec
        self.encoder = encoder
        self._known = set(spec.column_names)

    def read(self, body: bytes, *, max_rows: int) -> pa.Table:
        """The body as one table (one stream, any number of record batches)."""
        try:
            with pa.ipc.open_stream(pa.py_buffer(body)) as reader:
                table = reader.read_all()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ColumnarBodyError(
                None,
                f"body is not a readable Arrow IPC stream ({type(exc).__name__}); "
                f"send the {ARROW_STREAM} format, or JSON with content-type application/json",
                kind="arrow_stream",
            ) from None
        names = table.column_names
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ColumnarBodyError(dup, f"column {dup!r} appears more than once")
        unknown = [n for n in names if n not in self._known]
        if unknown:
            raise ColumnarBodyError(
                unknown[0],
                f"unknown column {unknown[0]!r}: feature spec '{self.spec.name}' has no such "
                "feature",
                kind="extra_forbidden",
            )
        if not 1 <= table.num_rows <= max_rows:
            raise ColumnarBodyError(
                "rows",
                f"batch has {table.num_rows} rows; between 1 and {max_rows} are accepted",
                kind="too_long" if table.num_rows else "too_short",
            )
        return table

    def decode(self, body: bytes, *, personalized: bool, max_rows: int) -> EncodedBatch:
        """Model inputs of every row, bit-identical to the JSON path's encoding."""
        table = self.read(body, max_rows=max_rows)
        n = table.num_rows
        present = set(table.column_names)

        def wanted(scope: str) -> bool:  # user-scope columns are ignored unless personalised
            return personalized or scope != "user"

        for f in (*self.spec.categorical, *self.spec.numeric, *self.spec.embedding):
            if f.name not in present and wanted(f.scope):
                user = "user-scope feature required when personalized=true " * (f.scope == "user")
                raise ColumnarBodyError(
                    f.name,
                    f"column {f.name!r} is missing ({user}send nulls for unknown values)",
                    kind="missing",
                )
        cats = [
            self._categorical(table, f.name, i) if wanted(f.scope) else np.zeros(n, np.int64)
            for i, f in enumerate(self.spec.categorical)
        ]
        x_cat = np.stack(cats, axis=1) if cats else np.zeros((n, 0), np.int64)
        raw = np.full((n, self.spec.num_numeric), np.nan)
        for j, f in enumerate(self.spec.numeric):
            if wanted(f.scope):
                raw[:, j] = self._numeric(table.column(f.name), f.name)
        x_num = self.encoder.transform_numeric(raw, personalized=personalized)
        x_dense = np.zeros((n, self.spec.dense_dim()), np.float32)
        start = 0
        for f in self.spec.embedding:
            if wanted(f.scope):
                self._embedding(
                    table.column(f.name), f.name, f.dim, x_dense[:, start : start + f.dim]
                )
            start += f.dim
        return EncodedBatch(x_cat=x_cat, x_num=x_num, x_dense=x_dense)

    def _categorical(self, table: pa.Table, name: str, index: int) -> np.ndarray:
        """Bucket ids, by the encoder's column path (each distinct value hashed once)."""
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        typ = col.type
        strings = pa.types.is_string(typ) or pa.types.is_large_string(typ)
        if not (strings or pa.types.is_integer(typ)):
            raise ColumnarBodyError(
                name,
                f"column {name!r} has type {typ}; a categorical is a string or integer column",
                kind="type_error",
            )
        encoded = pc.dictionary_encode(col)
        if strings:
            # the limit counts the raw value, padding included (as the JSON schema does)
            lengths = pc.utf8_length(encoded.dictionary).to_numpy(zero_copy_only=False)
            too_long = np.flatnonzero(lengths > MAX_CATEGORY_CHARS)
            if len(too_long):
                hit = np.isin(
                    encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), too_long
                )
                raise ColumnarBodyError(
                    name,
                    f"column {name!r} row {_first_true(hit)}: category longer than "
                    f"{MAX_CATEGORY_CHARS} characters",
                    kind="string_too_long",
                )
        return self.encoder.categorical_column(index, encoded)

    @staticmethod
    def _floats(col: pa.Array, name: str, what: str) -> tuple[np.ndarray, np.ndarray]:
        """float64 values (NaN where null) and the rows holding a non-finite number."""
        typ = col.type
        if not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
            raise ColumnarBodyError(
                name, f"column {name!r} has type {typ}; {what}", kind="type_error"
            )
        values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        valid = _valid(col)
        if valid is not None:
            bad = valid & ~np.isfinite(values)
            values = np.where(valid, values, np.nan)
        else:
            bad = ~np.isfinite(values)
        return values, bad

    @staticmethod
    def _not_finite(name: str, row: int) -> ColumnarBodyError:
        return ColumnarBodyError(
            name,
            f"column {name!r} row {row}: NaN and infinity are not accepted "
            "(send null for a missing value)",
            kind="finite_number",
        )

    def _numeric(self, chunked: pa.ChunkedArray, name: str) -> np.ndarray:
        """float64 values, NaN where null (the encoder's "missing")."""
        values, bad = self._floats(chunked.combine_chunks(), name, "a numeric is a number column")
        if bad.any():
            raise self._not_finite(name, _first_true(bad))
        return values

    def _embedding(self, chunked: pa.ChunkedArray, name: str, dim: int, out: np.ndarray) -> None:
        col = chunked.combine_chunks()
        typ = col.type
        if not (
            pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ)
        ):
            raise ColumnarBodyError(
                name,
                f"column {name!r} has type {typ}; an embedding is a list of {dim} numbers",
                kind="type_error",
            )
        if pa.types.is_fixed_size_list(typ) and typ.list_size != dim:
            raise ColumnarBodyError(
                name,
                f"column {name!r} has lists of {typ.list_size} numbers; expected {dim}",
                kind="list_length",
            )
        if not pa.types.is_fixed_size_list(typ):
            lengths = pc.list_value_length(col).fill_null(dim).to_numpy()
            if (lengths != dim).any():
                raise ColumnarBodyError(
                    name,
                    f"column {name!r} row {_first_true(lengths != dim)}: expected a list of "
                    f"exactly {dim} numbers",
                    kind="list_length",
                )
            col = col.cast(pa.list_(typ.value_type, dim))
        # a fixed-size list stores n * dim slots, null rows included
        n = len(col)
        flat, _ = self._floats(
            col.values.slice(col.offset * dim, n * dim),
            name,
            f"an embedding is a list of {dim} numbers",
        )
        matrix = flat.reshape(n, dim)
        bad = ~np.isfinite(matrix).all(axis=1)  # NaN, infinity, or a null number in a list
        valid = _valid(col)
        if valid is not None:
            bad &= valid
        if bad.any():
            raise ColumnarBodyError(
                name,
                f"column {name!r} row {_first_true(bad)}: an embedding holds finite numbers only "
                "(no NaN, infinity or null inside the list; a null list is a missing vector)",
                kind="finite_number",
            )
        if valid is None:
            out[:] = matrix
        else:
            out[valid] = matrix[valid]


__all__ = ["ARROW_STREAM", "ArrowBatchDecoder", "ColumnarBodyError"]
