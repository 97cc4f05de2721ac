"""Other file layouts join by a spec's [source] table alone: formats, names, bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedctr.models import FeatureSpec, FeatureSpecError, builtin_spec_path, load_spec
from fedctr.models.logs.errors import DataFileError
from fedctr.models.logs.reader import BadRowPolicy, read_partner_log

FEDERATION_SPEC = """
version = 1
name = "t"
salt = "s"
label = "click"
[[categorical]]
name = "ad"
buckets = 64
[[categorical]]
name = "site"
buckets = 64
"""


def _spec(tmp_path: Path, text: str, name: str = "spec.toml") -> FeatureSpec:
    path = tmp_path / name
    path.write_text(text)
    return load_spec(path)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_source_table_does_not_change_the_spec_hash(tmp_path: Path) -> None:
    """A partner's [source] is local: the federation's hash (and equality) is unchanged."""
    plain = _spec(tmp_path, FEDERATION_SPEC, "a.toml")
    mapped = _spec(
        tmp_path,
        FEDERATION_SPEC + '[source]\nformat = "csv"\nlabel = "clicked"\n',
        "b.toml",
    )

    assert mapped.spec_hash == plain.spec_hash
    assert mapped == plain
    assert mapped.source.label == "clicked"


def test_other_label_and_column_names_read_like_the_federation_file(tmp_path: Path) -> None:
    """Renamed columns, mapped in [source], encode to the same buckets."""
    plain = _spec(tmp_path, FEDERATION_SPEC, "a.toml")
    mapped = _spec(
        tmp_path,
        FEDERATION_SPEC
        + '[source]\nformat = "csv"\ndelimiter = ";"\nlabel = "clicked"\n'
        + '[source.columns]\nad = "creative"\n',
        "b.toml",
    )
    theirs = _write(tmp_path, "theirs.txt", "site;clicked;creative\nx;1;a\ny;0;b\n")
    ours = _write(tmp_path, "ours.csv", "click,ad,site\n1,a,x\n0,b,y\n")

    a, b = read_partner_log(ours, plain), read_partner_log(theirs, mapped)

    assert (a.x_cat == b.x_cat).all() and (a.y == b.y).all()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('[source]\nformat = ""\n', "format must be"),
        ('[source.columns]\nnot_a_column = "x"\n', "not feature columns"),
        ("[source]\nlabel = 3\n", "label must be"),
        ("[source]\nnested = [1]\n", "finite scalar"),
    ],
)
def test_malformed_source_table_is_a_spec_error(tmp_path: Path, source: str, message: str) -> None:
    """The shape of [source] is validated when the spec is loaded."""
    with pytest.raises(FeatureSpecError, match=message):
        _spec(tmp_path, FEDERATION_SPEC + source)


def test_unknown_format_or_option_rejects_the_file(tmp_path: Path) -> None:
    """Format names and options are checked by the reader registry, naming the choices."""
    data = _write(tmp_path, "log.csv", "click,ad,site\n1,a,x\n")
    with pytest.raises(DataFileError, match="format 'xlsx' is unknown"):
        read_partner_log(data, _spec(tmp_path, FEDERATION_SPEC + '[source]\nformat = "xlsx"\n'))
    with pytest.raises(DataFileError, match=r"options \['sheet'\]"):
        read_partner_log(
            data, _spec(tmp_path, FEDERATION_SPEC + '[source]\nformat = "csv"\nsheet = 1\n')
        )


LIBSVM_SPEC = (
    FEDERATION_SPEC
    + '[source]\nformat = "libsvm"\nfeatures_per_row = 2\nlabel = "label"\n'
    + '[source.columns]\nad = "1"\nsite = "2"\n'
)


def test_libsvm_lines_become_columns_by_token_position(tmp_path: Path) -> None:
    """Token k is spec column k's value; the same (field, index) hashes like a CSV value."""
    spec = _spec(tmp_path, LIBSVM_SPEC)
    data = read_partner_log(_write(tmp_path, "a.fm.txt", "1 3:1 7:1\n0 4:1 7:1\n"), spec)
    as_csv = read_partner_log(
        _write(tmp_path, "a.csv", "click,ad,site\n1,3,7\n0,4,7\n"),
        _spec(tmp_path, FEDERATION_SPEC, "plain.toml"),
    )

    assert data.y.tolist() == [1.0, 0.0]
    assert (data.x_cat == as_csv.x_cat).all()


def test_libsvm_bad_lines_follow_the_bad_row_policy(tmp_path: Path) -> None:
    """A short line or a non one-hot token is a bad row: skipped and counted, or fatal."""
    spec = _spec(tmp_path, LIBSVM_SPEC)
    path = _write(tmp_path, "b.fm.txt", "1 3:1 7:1\n0 4:1\n0 4:0.5 7:1\n0 5:1 8:1\n")

    kept = read_partner_log(path, spec, policy=BadRowPolicy.SKIP)
    assert len(kept) == 2 and kept.report.rows_skipped == 2
    assert {i.row for i in kept.report.issues} == {2, 3}
    with pytest.raises(DataFileError, match="row 2"):
        read_partner_log(path, spec, policy=BadRowPolicy.REJECT)


def test_libsvm_needs_its_row_width(tmp_path: Path) -> None:
    """Without features_per_row a shifted field could not be detected: refuse."""
    spec = _spec(tmp_path, LIBSVM_SPEC.replace("features_per_row = 2\n", ""))
    with pytest.raises(DataFileError, match="features_per_row"):
        read_partner_log(_write(tmp_path, "c.fm.txt", "1 3:1 7:1\n"), spec)


def test_real_ipinyou_and_arff_samples_read_with_their_specs_only(shared_data: Path) -> None:
    """The worked examples: iPinYou libSVM lines and the Criteo 45K ARFF, spec files only."""
    ipinyou = read_partner_log(
        shared_data / "ipinyou" / "test.fm.txt", load_spec(builtin_spec_path("ipinyou"))
    )
    dac = read_partner_log(
        shared_data / "criteo_kaggle_dac" / "cafpereira_train_45K_subsetcols.arff",
        load_spec(builtin_spec_path("criteo_dac_45k")),
    )

    assert len(ipinyou) == 21_150 and ipinyou.report.rows_skipped == 0
    assert int(ipinyou.y.sum()) == 50 and ipinyou.x_cat.shape == (21_150, 16)
    assert len(dac) == 45_840 and dac.report.rows_skipped == 0
    assert 0.25 < dac.y.mean() < 0.26
    assert np.isfinite(dac.x_num).all() and (dac.x_cat[:, 1] > 0).all()
