"""Data errors: a full message for the partner, a reason class for the wire.

Every place that raises :class:`DataFileError` gives a fixed :class:`Problem`; what
may leave the partner (``public()``) names the file and a spec column, never a row
number or a cell value, which stay in the partner's local message.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedctr.models import FeatureSpec, load_spec
from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.reader import BadRowPolicy, read_partner_log
from fedctr.privacy.wire import ErrorCode, ErrorReply, Problem

SPEC = """
version = 1
name = "t"
salt = "s"
label = "click"
[[categorical]]
name = "ad"
buckets = 64
[[numeric]]
name = "I1"
[[embedding]]
name = "txt"
dim = 2
modality = "text"
"""
HEADER = "click,ad,I1,txt\n"
GOOD_ROWS = "".join(f"{i % 2},a{i},{i}.5,0.1 0.2\n" for i in range(12))  # rows 1..12
BAD_ROW = 13  # the bad line comes right after the good ones

LIBSVM = (
    "version = 1\nname = 'l'\nsalt = 's'\nlabel = 'click'\n"
    "[[categorical]]\nname = 'ad'\nbuckets = 64\n"
    "[[categorical]]\nname = 'site'\nbuckets = 64\n"
    "[source]\nformat = 'libsvm'\nfeatures_per_row = 2\nlabel = 'label'\n"
    "[source.columns]\nad = '1'\nsite = '2'\n"
)
ARFF_SPEC = (
    "version = 1\nname = 'a'\nsalt = 's'\nlabel = 'click'\n"
    "[[categorical]]\nname = 'ad'\nbuckets = 64\n[source]\nformat = 'arff'\n"
)


def _spec(tmp_path: Path, text: str = SPEC, extra: str = "") -> FeatureSpec:
    path = tmp_path / "spec.toml"
    path.write_text(text + extra)
    return load_spec(path)


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _fails(path: Path, spec: FeatureSpec, policy: BadRowPolicy = BadRowPolicy.REJECT):
    with pytest.raises(DataFileError) as info:
        read_partner_log(path, spec, policy=policy)
    return info.value


def _reason(problem: Problem, file: str | None, column: str | None) -> str:
    return ErrorReply(code=ErrorCode.BAD_DATA, problem=problem, file=file, column=column).reason()


def _assert_public(err: DataFileError, problem: Problem, file: str, column: str | None) -> None:
    """The reply is exactly the declared fields, and survives the platform's parser."""
    reply = ErrorReply.for_data_file(err)
    assert err.problem.value == problem.value
    assert reply == ErrorReply(code=ErrorCode.BAD_DATA, problem=problem, file=file, column=column)
    assert reply.reason() == _reason(problem, file, column)
    assert ErrorReply.parse(int(reply.code), reply.reason()) == reply
    assert str(Path(err.file).parent) not in reply.reason()  # a name, never a path


# ---- bad values: the value and row stay local --------------------------------------
@pytest.mark.parametrize(
    ("bad_line", "problem", "column", "secret"),
    [
        ("MAGIC123,d,1,0.1 0.1", Problem.BAD_LABEL, "click", "MAGIC123"),
        ("1,d,zz987,0.1 0.1", Problem.NOT_A_NUMBER, "I1", "zz987"),
        ("1,d,-inf,0.1 0.1", Problem.INFINITE_VALUE, "I1", None),
        ("1,d,1,0.1 qq456", Problem.BAD_EMBEDDING, "txt", None),
        ("1,d,1,0.1 0.2 0.3", Problem.BAD_EMBEDDING, "txt", None),
    ],
)
def test_bad_values_give_a_reason_class_without_row_or_value(
    tmp_path: Path, bad_line: str, problem: Problem, column: str, secret: str | None
) -> None:
    path = _write(tmp_path, "log.csv", HEADER + GOOD_ROWS + bad_line + "\n")

    err = _fails(path, _spec(tmp_path))

    _assert_public(err, problem, "log.csv", column)
    reason = ErrorReply.for_data_file(err).reason()
    assert err.row == BAD_ROW and f"row {BAD_ROW}" in str(err) and str(BAD_ROW) not in reason
    assert str(path) in str(err) and "bad_rows = 'skip'" in str(err)
    if secret is not None:
        assert secret in str(err) and secret not in reason


def test_every_row_bad_is_its_own_class(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.csv", HEADER + "MAGIC123,a,1,\nMAGIC124,b,2,\n")

    err = _fails(path, _spec(tmp_path), policy=BadRowPolicy.SKIP)

    _assert_public(err, Problem.ALL_ROWS_BAD, "log.csv", None)
    assert "MAGIC123" in str(err) and "MAGIC123" not in ErrorReply.for_data_file(err).reason()


def test_header_only_file_is_empty(tmp_path: Path) -> None:
    err = _fails(_write(tmp_path, "log.csv", HEADER), _spec(tmp_path))
    _assert_public(err, Problem.EMPTY_FILE, "log.csv", None)


def test_unhashable_categorical_is_a_bad_category(tmp_path: Path) -> None:
    table = pa.table(
        {
            "click": [1, 0],
            "ad": pa.array([[1, 2], [3]], pa.list_(pa.int64())),
            "I1": [1.0, 2.0],
            "txt": ["0.1 0.2", "0.3 0.4"],
        }
    )
    pq.write_table(table, tmp_path / "log.parquet")

    err = _fails(tmp_path / "log.parquet", _spec(tmp_path))

    _assert_public(err, Problem.BAD_CATEGORY, "log.parquet", "ad")


# ---- files and headers ---------------------------------------------------------------
def test_missing_column_names_the_spec_column(tmp_path: Path) -> None:
    err = _fails(_write(tmp_path, "log.csv", "click,ad\n1,a\n"), _spec(tmp_path))

    _assert_public(err, Problem.MISSING_COLUMN, "log.csv", "I1")
    assert "['I1', 'txt']" in str(err) and "[source.columns]" in str(err)


def test_mapped_column_is_reported_under_the_spec_name_only(tmp_path: Path) -> None:
    """The file's own column names (the partner's [source]) stay local."""
    spec = _spec(tmp_path, extra="[source]\nformat = 'csv'\n[source.columns]\nad = 'creative9'\n")
    err = _fails(_write(tmp_path, "log.csv", "click,creativ,I1,txt\n1,a,1,\n"), spec)

    _assert_public(err, Problem.MISSING_COLUMN, "log.csv", "ad")
    assert "creative9" in str(err) and "creative9" not in ErrorReply.for_data_file(err).reason()


def test_stray_bytes_before_the_header_are_a_bad_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.csv", b"\x07.click,ad,I1,txt\n1,a,1,\n")

    err = _fails(path, _spec(tmp_path))

    _assert_public(err, Problem.BAD_HEADER, "log.csv", "click")
    text = str(err)
    assert str(path) in text and "'\\x07.click'" in text and "expects 'click'" in text
    assert "2 stray byte(s)" in text and "tail -c +3" in text
    assert "other columns are all present" in text


def test_a_longer_name_is_not_taken_for_stray_bytes(tmp_path: Path) -> None:
    """``userclick`` is another column, not ``click`` behind junk."""
    err = _fails(_write(tmp_path, "log.csv", "userclick,ad,I1,txt\n1,a,1,\n"), _spec(tmp_path))
    _assert_public(err, Problem.MISSING_COLUMN, "log.csv", "click")


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("log.csv", b"", Problem.EMPTY_FILE),
        ("log.parquet", b"", Problem.EMPTY_FILE),
        ("log.parquet", b"PAR1 this is not parquet", Problem.UNREADABLE_FILE),
        ("log.csv", b"click,ad,I1,txt\n1,a,1,\n0,b\n", Problem.BAD_LAYOUT),
        ("log.csv", b"click,ad,I1,txt\n1,\xff\xfe,1,\n", Problem.UNREADABLE_FILE),
        ("log.xlsx", b"click,ad,I1,txt\n1,a,1,\n", Problem.UNREADABLE_FILE),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, problem: Problem) -> None:
    err = _fails(_write(tmp_path, name, content), _spec(tmp_path))
    _assert_public(err, problem, name, None)


@pytest.mark.parametrize("name", ["gone.csv", "gone.parquet"])
def test_a_missing_file_is_unreadable(tmp_path: Path, name: str) -> None:
    err = _fails(tmp_path / name, _spec(tmp_path))
    _assert_public(err, Problem.UNREADABLE_FILE, name, None)


@pytest.mark.parametrize(
    "source",
    [
        "[source]\nformat = 'xlsx'\n",  # unknown format
        "[source]\nformat = 'csv'\nsheet = 1\n",  # unknown option
        "[source]\nformat = 'csv'\ndelimiter = ';;'\n",  # bad delimiter
        "[source]\nformat = 'csv'\n[source.columns]\nad = 'I1'\n",  # two spec columns, one file
    ],
)
def test_a_source_table_that_does_not_fit_is_a_bad_layout(tmp_path: Path, source: str) -> None:
    path = _write(tmp_path, "log.csv", HEADER + GOOD_ROWS)
    err = _fails(path, _spec(tmp_path, extra=source))
    _assert_public(err, Problem.BAD_LAYOUT, "log.csv", None)


# ---- libsvm and ARFF -------------------------------------------------------------------
def test_libsvm_errors(tmp_path: Path) -> None:
    good = "1 3:1 7:1\n"
    no_width = _spec(tmp_path, LIBSVM.replace("features_per_row = 2\n", ""))
    _assert_public(
        _fails(_write(tmp_path, "a.fm.txt", good), no_width), Problem.BAD_LAYOUT, "a.fm.txt", None
    )
    past_width = _spec(tmp_path, LIBSVM.replace("site = '2'", "site = '9'"))
    _assert_public(
        _fails(_write(tmp_path, "a.fm.txt", good), past_width),
        Problem.BAD_LAYOUT,
        "a.fm.txt",
        "site",
    )
    spec = _spec(tmp_path, LIBSVM)
    _assert_public(_fails(tmp_path / "gone.txt", spec), Problem.UNREADABLE_FILE, "gone.txt", None)


@pytest.mark.parametrize(
    ("line", "column"),
    [("0 4:1", "ad"), ("0 4:1 77:0.5", "site")],
)
def test_libsvm_bad_lines_name_the_spec_column(tmp_path: Path, line: str, column: str) -> None:
    path = _write(tmp_path, "b.fm.txt", "1 3:1 7:1\n" * 12 + line + "\n")

    err = _fails(path, _spec(tmp_path, LIBSVM))

    _assert_public(err, Problem.BAD_LAYOUT, "b.fm.txt", column)
    assert (
        f"row {BAD_ROW}" in str(err) and str(BAD_ROW) not in ErrorReply.for_data_file(err).reason()
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", Problem.EMPTY_FILE),
        ("@relation r\n@attribute 'click numeric\n@data\n", Problem.BAD_HEADER),
        ("@relation r\n@attribute click numeric\n@attribute ad string\n", Problem.BAD_HEADER),
        ("@attribute click numeric\n@attribute other string\n@data\n1,x\n", Problem.MISSING_COLUMN),
        ("@attribute click numeric\n@attribute ad string\n@data\n{0 1}\n", Problem.BAD_LAYOUT),
    ],
)
def test_arff_errors(tmp_path: Path, text: str, problem: Problem) -> None:
    err = _fails(_write(tmp_path, "d.arff", text), _spec(tmp_path, ARFF_SPEC))
    _assert_public(err, problem, "d.arff", "ad" if problem is Problem.MISSING_COLUMN else None)


def test_arff_missing_file_is_unreadable(tmp_path: Path) -> None:
    err = _fails(tmp_path / "gone.arff", _spec(tmp_path, ARFF_SPEC))
    _assert_public(err, Problem.UNREADABLE_FILE, "gone.arff", None)


def test_every_data_reason_class_is_declared_by_the_wire_contract() -> None:
    """The reader's reason classes and the contract's bad-data classes are one list."""
    declared = {p.value for p in Problem}
    assert {p.value for p in DataProblem} <= declared


# ---- the error type itself ------------------------------------------------------------
def test_only_data_reason_classes_are_accepted() -> None:
    assert Problem.BUDGET_EXHAUSTED.value not in {p.value for p in DataProblem}
    with pytest.raises(ValueError, match="is not a valid DataProblem"):
        DataFileError("x", file="a.csv", problem=Problem.BUDGET_EXHAUSTED)
    with pytest.raises(TypeError):
        DataFileError("x", file="a.csv")  # type: ignore[call-arg]


def test_undeclarable_names_are_left_out_of_the_reply() -> None:
    err = DataFileError(
        "/data/my log 7.csv: row 7 ...",
        file="/data/my log 7.csv",
        problem=Problem.BAD_LABEL,
        row=7,
        column="a b",
    )
    assert ErrorReply.for_data_file(err) == ErrorReply(
        code=ErrorCode.BAD_DATA, problem=Problem.BAD_LABEL
    )
    assert ErrorReply.for_data_file(err).reason() == "problem=bad-label"


def test_real_talkingdata_stray_bytes_give_a_bad_header(tmp_path: Path, shared_data: Path) -> None:
    """The shared TalkingData sample starts with two stray bytes before ``ip``."""
    path = shared_data / "talkingdata" / "train_sample.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    spec = _spec(
        tmp_path,
        "version = 1\nname = 'td'\nsalt = 's'\nlabel = 'is_attributed'\n"
        + "".join(
            f"[[categorical]]\nname = '{c}'\nbuckets = 1024\n"
            for c in ("ip", "app", "device", "os", "channel")
        ),
    )

    err = _fails(path, spec, policy=BadRowPolicy.SKIP)

    _assert_public(err, Problem.BAD_HEADER, "train_sample.csv", "ip")
    text = str(err)
    assert str(path) in text and "first column is '..ip'" in text and "expects 'ip'" in text
    assert "2 stray byte(s) b'..'" in text and "tail -c +3" in text
