"""Reading partner logs: nothing bad slips through, and nothing is skipped silently."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedctr.models import FeatureSpec, builtin_spec_path, load_spec
from fedctr.models.logs.errors import DataFileError
from fedctr.models.logs.reader import BadRowPolicy, read_partner_log

SPEC_TEXT = """
version = 1
name = "t"
salt = "s"
label = "click"
[[categorical]]
name = "ad"
buckets = 64
[[numeric]]
name = "price"
[[embedding]]
name = "txt"
dim = 2
modality = "text"
"""

GOOD = "click,ad,price,txt\n1,a,1.5,0.1 0.2\n0,b,,0.3 0.4\n0,c,2,\n"


@pytest.fixture
def spec(tmp_path: Path) -> FeatureSpec:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC_TEXT)
    return load_spec(path)


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


def test_good_csv_is_read_with_missing_values_filled(tmp_path: Path, spec: FeatureSpec) -> None:
    data = read_partner_log(_csv(tmp_path, GOOD), spec)

    assert len(data) == 3
    assert data.y.tolist() == [1.0, 0.0, 0.0]
    assert data.x_num[1, 0] == 0.0  # missing price -> fill
    assert data.x_dense[2].tolist() == [0.0, 0.0]  # missing embedding -> zeros
    assert data.report.rows_skipped == 0


@pytest.mark.parametrize(
    ("bad_line", "column", "reason"),
    [
        ("yes,d,1,0.1 0.1", "click", "label must be 0 or 1"),
        ("1,d,cheap,0.1 0.1", "price", "not a number"),
        ("1,d,inf,0.1 0.1", "price", "infinite"),
        ("1,d,1,0.1", "txt", "embedding must have 2 finite values"),
        ("1,d,1,0.1 nan", "txt", "embedding must have 2 finite values"),
    ],
)
def test_reject_policy_names_file_row_and_column(
    tmp_path: Path, spec: FeatureSpec, bad_line: str, column: str, reason: str
) -> None:
    """policy=reject: the first bad value fails the file with file, row and column."""
    path = _csv(tmp_path, GOOD + bad_line + "\n")

    with pytest.raises(DataFileError, match=reason) as info:
        read_partner_log(path, spec, policy=BadRowPolicy.REJECT)
    err = info.value
    assert (err.file, err.row, err.column) == (str(path), 4, column)
    assert f"row 4, column '{column}'" in str(err) and str(path) in str(err)


def test_skip_policy_drops_and_reports_every_bad_row(
    tmp_path: Path, spec: FeatureSpec, caplog: pytest.LogCaptureFixture
) -> None:
    """policy=skip: bad rows are dropped, counted, and logged with examples."""
    path = _csv(tmp_path, GOOD + "yes,d,1,0.1 0.1\n1,e,cheap,0.1 0.1\n")

    with caplog.at_level(logging.WARNING):
        data = read_partner_log(path, spec, policy=BadRowPolicy.SKIP)

    assert len(data) == 3
    assert data.report.rows_read == 5 and data.report.rows_skipped == 2
    assert [(i.row, i.column) for i in data.report.issues] == [(4, "click"), (5, "price")]
    assert "skipped 2 bad rows" in caplog.text


def test_missing_column_rejects_the_file_whatever_the_policy(
    tmp_path: Path, spec: FeatureSpec
) -> None:
    path = _csv(tmp_path, "click,ad\n1,a\n")

    with pytest.raises(DataFileError, match=r"missing column\(s\) \['price', 'txt'\]"):
        read_partner_log(path, spec, policy=BadRowPolicy.SKIP)


def test_unparseable_file_is_a_data_error_not_a_crash(tmp_path: Path, spec: FeatureSpec) -> None:
    path = tmp_path / "log.parquet"
    path.write_bytes(b"PAR1 this is not parquet")

    with pytest.raises(DataFileError, match=str(path)):
        read_partner_log(path, spec)


def test_parquet_and_csv_of_the_same_rows_encode_identically(
    tmp_path: Path, spec: FeatureSpec
) -> None:
    table = pa.table(
        {
            "click": [1, 0],
            "ad": ["a", "b"],
            "price": [1.5, None],
            "txt": pa.array([[0.1, 0.2], [0.3, 0.4]], pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, tmp_path / "log.parquet")
    from_parquet = read_partner_log(tmp_path / "log.parquet", spec)
    from_csv = read_partner_log(
        _csv(tmp_path, "click,ad,price,txt\n1,a,1.5,0.1 0.2\n0,b,,0.3 0.4\n"), spec
    )

    assert (from_parquet.x_cat == from_csv.x_cat).all()
    assert (from_parquet.x_num == from_csv.x_num).all()
    assert abs(from_parquet.x_dense - from_csv.x_dense).max() < 1e-6


def test_real_criteo_samples_read_without_loss(shared_data: Path) -> None:
    """Real files: Criteo attribution (Parquet) and Kaggle DAC (CSV with blanks)."""
    attribution = read_partner_log(
        shared_data / "criteo_attribution_small" / "small_valid.parquet",
        load_spec(builtin_spec_path("criteo_attribution")),
    )
    dac = read_partner_log(
        shared_data / "criteo_kaggle_dac" / "cafpereira_train_sample_4K.csv",
        load_spec(builtin_spec_path("criteo_kaggle_dac")),
    )

    assert len(attribution) == 49_770 and attribution.report.rows_skipped == 0
    assert len(dac) == 4_584 and dac.report.rows_skipped == 0
    assert 0.2 < dac.y.mean() < 0.3
