"""Training and scoring encode any spec-valid row identically (no training/serving skew).

Rows are generated for every built-in feature spec and go down both sides:

- **training**: written to a CSV or Parquet file and read back by
  :func:`fedctr.models.logs.reader.read_partner_log` (policy ``reject``, so a row the
  reader would not take fails the test instead of disappearing);
- **scoring**: the same rows as the scoring service receives them, validated by its
  request schemas from JSON, then encoded one row at a time (``encode_one``, the
  latency path) and as a batch (``encode``), and sent as an Arrow IPC batch.

Bucket ids must be equal, and numerics and embeddings equal as float32 (the
training path's dtype; the single-row path computes in float64 and the service rounds
to float32, which is what is compared). With ``personalized=False`` every scoring path
must give the training encoding with the user-scope features missing.

The built-in specs are read with the default source layout (files by suffix, columns
by spec name): the encoding is under test, not the spec's own file format.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedctr.models.encoding import EncodedBatch, FeatureEncoder
from fedctr.models.logs.reader import BadRowPolicy, EncodedData, read_partner_log
from fedctr.models.spec import FeatureSpec, builtin_spec_path, load_spec
from fedctr.server.scoring.api.schemas import RequestSchemas, build_request_schemas
from fedctr.server.scoring.columnar import MAX_CATEGORY_CHARS, ArrowBatchDecoder
from tests.support.scoring import arrow_body

SPEC_DIR = builtin_spec_path("demo").parent
# Features only: a user key names a person for user-level DP, it is no model input.
SPECS = {
    path.stem: FeatureSpec.from_dict(
        {k: v for k, v in load_spec(path).to_dict().items() if k != "user_key"}, source=str(path)
    )
    for path in sorted(SPEC_DIR.glob("*.toml"))
}
MAX_ROWS = 12
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Strings a CSV reader turns into null (pyarrow's defaults, which the log reader keeps).
CSV_NULL_MARKERS = frozenset(pacsv.ConvertOptions().null_values)


@dataclass(frozen=True)
class Column:
    """One generated column: how its values are typed in a file and in a request."""

    name: str
    role: str  # categorical | numeric | embedding
    kind: str  # the file's type: text | int | float | vector
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    spec_name: str
    fmt: str
    labels: tuple[int, ...]
    columns: tuple[Column, ...]

    @property
    def spec(self) -> FeatureSpec:
        return SPECS[self.spec_name]

    def request_rows(self) -> list[dict[str, Any]]:
        """The rows as a scoring client sends them (JSON types)."""
        return [
            {c.name: _request_value(c, c.values[i]) for c in self.columns}
            for i in range(len(self.labels))
        ]


def _request_value(column: Column, value: Any) -> Any:
    """A category a file holds as a float is sent as the category it stands for: an
    integer, or the number's text (a request category is a string or an integer)."""
    if column.role != "categorical" or column.kind != "float" or value is None:
        return value
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() else repr(value)


def _category_text(fmt: str) -> st.SearchStrategy[str]:
    """Any text a request may carry; around digits and "NA", the padding both sides strip."""
    # a CSV cell holds no line break (the reader does not take quoted ones)
    chars = st.characters(codec="utf-8", exclude_characters="\r\n" if fmt == "csv" else "")
    text = st.one_of(
        st.text(chars, max_size=24),
        st.text(" \t\u00a0\u3000\x1f\x85", max_size=3).flatmap(
            lambda pad: st.sampled_from(["5", "007", "-3", "5.0", "1e3", "٥", "ad", "NA"]).map(
                lambda core: pad + core + pad
            )
        ),
        st.text(chars, min_size=MAX_CATEGORY_CHARS - 2, max_size=MAX_CATEGORY_CHARS),
    )
    if fmt == "csv":
        # Known skew of the CSV reader (models/logs/formats/tabular.py), not of the encoder:
        # a cell equal to one of pyarrow's null markers ("NA", "null", ...) is read as
        # missing (bucket 0), while a request's "NA" is hashed as a category.
        text = text.filter(lambda s: s not in CSV_NULL_MARKERS)
    return text


@st.composite
def cases(draw: st.DrawFn, spec_name: str, fmt: str) -> Case:
    """Spec-valid rows for one spec, typed the ways a partner's file and a request can type
    them: categoricals as text, integers or (Parquet) floats, numerics as floats or
    integers, embeddings as lists; any value may be missing."""
    spec = SPECS[spec_name]
    n = draw(st.integers(min_value=1, max_value=MAX_ROWS))

    def column_of(values: st.SearchStrategy[Any]) -> tuple[Any, ...]:
        # a small pool drawn from, so that repeated values (dedupe, caches) are common
        pool = draw(st.lists(values, min_size=1, max_size=n))
        return tuple(draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)))

    columns = []
    for f in spec.categorical:
        kinds = ["text", "int", "float"] if fmt == "parquet" else ["text", "int"]
        kind = draw(st.sampled_from(kinds))
        values = {
            "text": _category_text(fmt),
            "int": INT64,
            "float": st.one_of(
                st.just(math.nan),
                st.integers(-(10**15), 10**15).map(float),
                st.floats(min_value=-1e15, max_value=1e15, allow_nan=False),
            ),
        }[kind]
        columns.append(Column(f.name, "categorical", kind, column_of(st.none() | values)))
    for f in spec.numeric:
        kind = draw(st.sampled_from(["float", "int"]))
        values = INT64 if kind == "int" else st.floats(allow_nan=False, allow_infinity=False)
        columns.append(Column(f.name, "numeric", kind, column_of(st.none() | values)))
    for f in spec.embedding:
        vector = st.lists(
            st.floats(min_value=-3e38, max_value=3e38, allow_nan=False),
            min_size=f.dim,
            max_size=f.dim,
        )
        columns.append(Column(f.name, "embedding", "vector", column_of(st.none() | vector)))
    labels = tuple(draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n)))
    return Case(spec_name, fmt, labels, tuple(columns))


def _write(case: Case, directory: Path) -> Path:
    """The rows as a partner's log file."""
    spec = case.spec
    if case.fmt == "parquet":
        types = {
            "text": pa.string(),
            "int": pa.int64(),
            "float": pa.float64(),
            "vector": pa.list_(pa.float64()),
        }
        arrays = {spec.label: pa.array(case.labels, pa.int64())}
        for c in case.columns:
            arrays[c.name] = pa.array(c.values, types[c.kind])
        path = directory / "log.parquet"
        pq.write_table(pa.table(arrays), path)
        return path
    path = directory / "log.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([spec.label, *(c.name for c in case.columns)])
        for i, label in enumerate(case.labels):
            writer.writerow([label, *(_csv_cell(c, c.values[i]) for c in case.columns)])
    return path


def _csv_cell(column: Column, value: Any) -> str:
    if value is None:
        return ""
    if column.kind == "vector":
        return " ".join(repr(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _masked(spec: FeatureSpec, trained: EncodedData) -> EncodedBatch:
    """The training encoding with every user-scope feature missing."""
    x_cat, x_num, x_dense = trained.x_cat.copy(), trained.x_num.copy(), trained.x_dense.copy()
    for j, f in enumerate(spec.categorical):
        if f.scope == "user":
            x_cat[:, j] = 0
    for j, f in enumerate(spec.numeric):
        if f.scope == "user":
            x_num[:, j] = np.float32(f.fill)
    start = 0
    for f in spec.embedding:
        if f.scope == "user":
            x_dense[:, start : start + f.dim] = 0.0
        start += f.dim
    return EncodedBatch(x_cat=x_cat, x_num=x_num, x_dense=x_dense)


def _assert_same(got: EncodedBatch, want: EncodedBatch | EncodedData, path: str) -> None:
    assert got.x_cat.dtype == np.int64 and got.x_num.dtype == got.x_dense.dtype == np.float32
    np.testing.assert_array_equal(got.x_cat, want.x_cat, err_msg=f"{path}: bucket ids")
    np.testing.assert_array_equal(got.x_num, want.x_num, err_msg=f"{path}: numerics")
    np.testing.assert_array_equal(got.x_dense, want.x_dense, err_msg=f"{path}: embeddings")


def _one_by_one(encoder: FeatureEncoder, rows: list[dict], personalized: bool) -> EncodedBatch:
    """The latency path's output, rounded to float32 as the service's kernels take it."""
    encoded = [encoder.encode_one(row, personalized=personalized) for row in rows]
    n, spec = len(rows), encoder.spec
    return EncodedBatch(
        x_cat=np.array([e[0] for e in encoded], dtype=np.int64).reshape(n, spec.num_categorical),
        x_num=np.array([e[1] for e in encoded], dtype=np.float32).reshape(n, spec.num_numeric),
        x_dense=np.array([e[2] for e in encoded], dtype=np.float32).reshape(n, spec.dense_dim()),
    )


@dataclass
class Service:
    """One spec's scoring side, long-lived like the service's (its caches carry over)."""

    encoder: FeatureEncoder
    arrow: ArrowBatchDecoder
    schemas: RequestSchemas


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    out = {}
    for name, spec in SPECS.items():
        encoder = FeatureEncoder(spec, context_cache_size=64)  # small: evictions happen too
        schemas = build_request_schemas(spec, max_batch_rows=MAX_ROWS)
        out[name] = Service(encoder, ArrowBatchDecoder(spec, encoder), schemas)
    return out


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_training_and_scoring_encode_rows_identically(
    spec_name: str, fmt: str, services: dict[str, Service]
) -> None:
    """A spec-valid row gets the same model inputs from the log reader and every scoring path."""
    service = services[spec_name]

    @settings(
        max_examples=50 if spec_name == "demo" else 20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases(spec_name, fmt))
    def check(case: Case) -> None:
        spec = case.spec
        with tempfile.TemporaryDirectory() as tmp:
            trained = read_partner_log(_write(case, Path(tmp)), spec, policy=BadRowPolicy.REJECT)
        assert len(trained) == len(case.labels)
        rows = case.request_rows()
        # JSON bodies, validated as the service validates them: the rows are spec-valid
        singles = [
            service.schemas.score.model_validate_json(json.dumps({"features": row})).features
            for row in rows
        ]
        batch = service.schemas.batch.model_validate_json(json.dumps({"rows": rows})).rows
        body = arrow_body(
            spec,
            rows,
            types={c.name: pa.int64() for c in case.columns if c.kind == "int"},
        )
        for personalized in (True, False):
            want = trained if personalized else _masked(spec, trained)
            got_one = _one_by_one(service.encoder, singles, personalized)
            _assert_same(got_one, want, "encode_one")
            got_batch = service.encoder.encode(batch, personalized=personalized)
            _assert_same(got_batch, want, "encode (JSON batch)")
            got_arrow = service.arrow.decode(body, personalized=personalized, max_rows=MAX_ROWS)
            _assert_same(got_arrow, want, "Arrow batch")

    check()
