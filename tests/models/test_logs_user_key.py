"""The spec's user key: which columns name a person (the unit of user-level DP).

Read on the partner's node only: hashed with the federation's salt into an int64 id
per row, never a model input; a row without a user cannot be protected per user, so
it is a bad row reported with its file, row and column like any other."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedctr.models import FeatureSpecError
from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.reader import BadRowPolicy, read_partner_log
from fedctr.models.spec import FeatureSpec


def _spec(**extra) -> FeatureSpec:
    raw = {
        "name": "t",
        "salt": "s",
        "label": "click",
        "categorical": [{"name": "ad", "buckets": 16}],
        **extra,
    }
    return FeatureSpec.from_dict(raw)


def _log(path: Path, rows: list[str]) -> Path:
    path.write_text("ip,device,ad,click\n" + "\n".join(rows) + "\n")
    return path


def test_rows_of_one_person_share_an_id_in_every_file(tmp_path: Path) -> None:
    spec = _spec(user_key=["ip", "device"])
    a = read_partner_log(_log(tmp_path / "a.csv", ["1,x,a,0", "1,x,b,1", "1,y,a,0"]), spec)
    b = read_partner_log(_log(tmp_path / "b.csv", ["2,x,a,0", "1,x,c,1"]), spec)

    assert a.users is not None and b.users is not None
    assert a.users[0] == a.users[1] != a.users[2]  # (1, x) twice; (1, y) is someone else
    assert b.users[1] == a.users[0]  # the same person in another file
    assert a.x_cat.shape == (3, 1)  # the key is no model input
    assert a.take([0, 2]).users.tolist() == [a.users[0], a.users[2]]


def test_a_row_without_its_user_is_a_bad_row(tmp_path: Path) -> None:
    spec = _spec(user_key=["ip"])
    path = _log(tmp_path / "a.csv", ["1,x,a,0", ",x,b,1", "3,x,c,0"])

    data = read_partner_log(path, spec)
    assert len(data) == 2 and data.report is not None
    (issue,) = data.report.issues
    assert (issue.row, issue.column) == (2, "ip")
    assert "names no person" in issue.reason

    with pytest.raises(DataFileError) as caught:
        read_partner_log(path, spec, policy=BadRowPolicy.REJECT)
    assert caught.value.problem is DataProblem.MISSING_USER_KEY
    assert caught.value.column == "ip" and caught.value.row == 2


def test_a_spec_without_a_user_key_keeps_its_hash_and_reads_no_users(tmp_path: Path) -> None:
    plain = _spec()
    assert "user_key" not in plain.to_dict()
    assert _spec(user_key=[]).spec_hash == plain.spec_hash
    assert _spec(user_key=["ip"]).spec_hash != plain.spec_hash
    data = read_partner_log(_log(tmp_path / "a.csv", ["1,x,a,0"]), plain)
    assert data.users is None


def test_the_user_key_is_never_the_label_and_names_distinct_columns() -> None:
    with pytest.raises(FeatureSpecError, match="user_key"):
        _spec(user_key=["click"])
    with pytest.raises(FeatureSpecError, match="user_key"):
        _spec(user_key=["ip", "ip"])
    with pytest.raises(FeatureSpecError, match="user_key"):
        _spec(user_key=3)


def test_a_partner_without_user_level_dp_needs_no_user_key(tmp_path: Path) -> None:
    """users=False (unit = example): neither the key columns nor their cells are required."""
    spec = _spec(user_key=["ip"])
    path = tmp_path / "a.csv"
    path.write_text("ad,click\na,0\nb,1\n")
    data = read_partner_log(path, spec, users=False)
    assert len(data) == 2 and data.users is None
    with pytest.raises(DataFileError, match="ip"):
        read_partner_log(path, spec)


def test_a_separator_inside_a_key_cell_does_not_merge_two_people(tmp_path: Path) -> None:
    spec = _spec(user_key=["ip", "device"])
    path = tmp_path / "a.csv"
    path.write_text('ip,device,ad,click\n"a\x1fb",c,x,0\na,"b\x1fc",x,1\n')
    data = read_partner_log(path, spec)
    assert data.users is not None and data.users[0] != data.users[1]
