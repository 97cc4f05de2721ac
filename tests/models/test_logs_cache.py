"""The on-disk encoded cache (issue 19): a log encoded block by block is the log read
whole, row for row, split for split and issue for issue; it is built once and rebuilt
when the log changes; training reads its batches from the row file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fedctr.clients.holdout import seed_key
from fedctr.models import FeatureSpec
from fedctr.models.logs import DataFileError
from fedctr.models.logs.cache import encoded_splits
from fedctr.models.logs.reader import (
    BadRowPolicy,
    EncodedData,
    StoredRows,
    UserKeyCheck,
    UserKeyCollision,
    read_partner_log,
)

KEY = seed_key(0)


def _same(a: EncodedData, b: EncodedData) -> None:
    for x, y in zip(a.tensors(), b.tensors(), strict=True):
        assert torch.equal(x, y)
    assert (a.users is None) == (b.users is None)
    if a.users is not None:
        assert np.array_equal(a.users, b.users)


@pytest.mark.parametrize("partner", ["shop-a", "crm-c"])  # Parquet; CSV with bad rows
@pytest.mark.parametrize("users", [False, True])
def test_a_log_encoded_in_blocks_is_the_log_read_whole(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec, partner: str, users: bool
) -> None:
    log = synthetic_logs[0][partner]
    train, holdout = read_partner_log(log, demo_spec, users=users).split(0.2, key=KEY)

    cached = encoded_splits(
        log, demo_spec, tmp_path, holdout_fraction=0.2, holdout_key=KEY, users=users, block_rows=97
    )

    assert cached[0].on_disk and cached[1].on_disk
    _same(train, cached[0])
    _same(holdout, cached[1])
    assert _counts(cached[0].report) == _counts(train.report)  # the same rows kept, skipped


def _counts(report):
    """A report's counts and its issues (in blocks they come in file order, whole in
    column order)."""
    return report.rows_read, report.rows_kept, report.issue_count, sorted(report.issues, key=repr)


def test_bad_rows_are_numbered_from_the_files_first_row_in_every_block(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    log = synthetic_logs[0]["crm-c"]  # a CSV with bad rows
    whole = read_partner_log(log, demo_spec).report
    assert whole is not None and whole.issues

    blocks = encoded_splits(
        log, demo_spec, tmp_path / "a", holdout_fraction=0.0, holdout_key=KEY, block_rows=50
    )[0].report
    assert blocks is not None and sorted(blocks.issues, key=repr) == sorted(whole.issues, key=repr)

    with pytest.raises(DataFileError) as in_blocks:
        encoded_splits(
            log,
            demo_spec,
            tmp_path / "b",
            holdout_fraction=0.0,
            holdout_key=KEY,
            policy=BadRowPolicy.REJECT,
            block_rows=50,
        )
    # rejected at the file's first bad row (read whole: the first in column order)
    first = min(whole.issues, key=lambda i: i.row)
    assert (in_blocks.value.row, in_blocks.value.column) == (first.row, first.column)
    assert not any((tmp_path / "b").iterdir())  # a refused log leaves no half-built cache


def test_the_cache_is_built_once_and_rebuilt_when_the_log_changes(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fedctr.models.logs.cache as cache

    log = tmp_path / "log.parquet"
    log.write_bytes(synthetic_logs[0]["shop-a"].read_bytes())
    built: list[Path] = []
    real_build = cache._build
    monkeypatch.setattr(
        cache, "_build", lambda path, *a, **k: built.append(path) or real_build(path, *a, **k)
    )

    def splits():
        return encoded_splits(
            log, demo_spec, tmp_path / "cache", holdout_fraction=0.2, holdout_key=KEY
        )

    first = splits()
    second = splits()  # the next round's node
    assert len(built) == 1
    _same(first[0], second[0])

    log.write_bytes(synthetic_logs[0]["advertiser-b"].read_bytes())
    os.utime(log, ns=(1, 1))
    changed = splits()
    assert len(built) == 2
    assert len(changed[0]) + len(changed[1]) == 1200
    assert len(list((tmp_path / "cache").iterdir())) == 1  # the old encoding is gone


def test_stored_rows_read_batches_from_disk(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    train, _ = encoded_splits(
        synthetic_logs[0]["shop-a"], demo_spec, tmp_path, holdout_fraction=0.0, holdout_key=KEY
    )
    assert train.store is not None
    index = torch.tensor([0, 7, 7, 1499, 3])
    for column, expected in zip(train.store.gather(index), train.tensors(), strict=True):
        assert torch.equal(column, expected.index_select(0, index))
    loader = train.loader(batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert isinstance(loader.dataset, StoredRows)
    assert sum(len(batch[-1]) for batch in loader) == len(train)
    in_batches = [torch.cat(parts) for parts in zip(*train.batches(100), strict=True)]
    for column, expected in zip(in_batches, train.tensors(), strict=True):
        assert torch.equal(column, expected)


def test_a_user_key_collision_across_blocks_is_detected() -> None:
    check = UserKeyCheck()
    check.add(np.array([1, 2], dtype=np.int64), ["alice", "bob"], b"salt")
    check.add(np.array([2], dtype=np.int64), ["bob"], b"salt")  # the same person again
    check.finish()
    check.add(np.array([1], dtype=np.int64), ["alice"], b"salt")
    check.add(np.array([1], dtype=np.int64), ["carol"], b"salt")  # another person, one id
    with pytest.raises(UserKeyCollision):
        check.finish()
