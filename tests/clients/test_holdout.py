"""The keyed holdout: a row's side depends on the partner's key and the row alone.

Adding or removing one row of the log, or reordering it, moves no other row across
the split (a permutation over N moved hundreds); the key is drawn once, kept 0600 in
the partner's state directory, and reused after restarts.
"""

from __future__ import annotations

import math
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from fedctr.clients.holdout import KEY_BYTES, KEY_FILE, HoldoutKeyError, holdout_key, seed_key
from fedctr.models import FeatureSpec, load_spec
from fedctr.models.logs.reader import EncodedData, read_partner_log

KEY = bytes(range(32))
SPEC = """
version = 1
name = "t"
salt = "s"
label = "click"
[[categorical]]
name = "ad"
buckets = 4096
[[numeric]]
name = "price"
"""


def _data(n: int, seed: int = 0) -> EncodedData:
    """``n`` distinct rows (the first categorical column is the row's serial number)."""
    rng = np.random.default_rng(seed)
    x_cat = rng.integers(0, 50, size=(n, 3), dtype=np.int64)
    x_cat[:, 0] = np.arange(n) + 1_000_000 * seed
    return EncodedData(
        x_cat,
        rng.normal(size=(n, 2)).astype(np.float32),
        rng.normal(size=(n, 1)).astype(np.float32),
        rng.integers(0, 2, size=n).astype(np.float32),
    )


def _sides(data: EncodedData, key: bytes = KEY, fraction: float = 0.3) -> dict[bytes, bool]:
    """Row content -> held out?"""
    mask = data.holdout_mask(fraction, key=key)
    return {row.tobytes(): bool(m) for row, m in zip(data.row_bytes(), mask, strict=True)}


# ---- (c) independence of N and row order -----------------------------------------------
def test_adding_or_removing_a_row_moves_no_other_row() -> None:
    base = _data(2_000)
    sides = _sides(base)
    extra = _data(1, seed=7)
    grown = _concat(base.take(np.arange(900)), extra, base.take(np.arange(900, 2_000)))
    shrunk = base.take(np.delete(np.arange(len(base)), 1234))

    for variant, expect_rows in ((grown, 2_001), (shrunk, 1_999)):
        other = _sides(variant)
        assert len(other) == expect_rows
        common = other.keys() & sides.keys()
        assert len(common) == min(expect_rows, 2_000)
        assert all(other[row] == sides[row] for row in common)


def test_reordering_the_log_moves_no_row() -> None:
    base = _data(2_000)
    order = np.random.default_rng(3).permutation(len(base))
    shuffled = base.take(order)
    # ... and with one row added and one removed as well
    changed = _concat(shuffled.take(np.arange(1, 2_000)), _data(1, seed=9))

    assert (shuffled.holdout_mask(0.3, key=KEY) == base.holdout_mask(0.3, key=KEY)[order]).all()
    sides, other = _sides(base), _sides(changed)
    assert all(other[row] == sides[row] for row in other.keys() & sides.keys())


def test_a_grown_and_shuffled_log_file_keeps_every_old_rows_side(tmp_path: Path) -> None:
    """End to end through the loader: the same CSV rows, one more, in another order."""
    spec = _spec(tmp_path)
    lines = [f"{i % 2},ad{i},{i}.25" for i in range(3_000)]
    shuffled = [lines[i] for i in np.random.default_rng(5).permutation(len(lines))]
    before = read_partner_log(_csv(tmp_path, "a.csv", lines), spec)
    after = read_partner_log(
        _csv(tmp_path, "b.csv", [*shuffled[:10], "1,new,0.5", *shuffled[10:]]), spec
    )

    old, new = _sides(before, fraction=0.2), _sides(after, fraction=0.2)
    assert len(new) == len(old) + 1
    assert all(new[row] == side for row, side in old.items())
    _, old_holdout = before.split(0.2, key=KEY)
    _, new_holdout = after.split(0.2, key=KEY)
    assert len(new_holdout) - len(old_holdout) in (0, 1)


# ---- the split itself ---------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("key", [KEY, b"\xff" * 32, seed_key(1)], ids=["a", "b", "seed"])
def test_holdout_size_is_within_binomial_bounds(fraction: float, key: bytes) -> None:
    n = 20_000
    held = int(_data(n).holdout_mask(fraction, key=key).sum())
    sd = math.sqrt(n * fraction * (1 - fraction))
    assert abs(held - n * fraction) < 5 * sd  # ~6e-7 chance per case of a false failure


def test_split_partitions_the_rows_in_file_order() -> None:
    data = _data(500)
    train, holdout = data.split(0.3, key=KEY)
    mask = data.holdout_mask(0.3, key=KEY)

    assert len(train) + len(holdout) == 500
    assert (holdout.x_cat[:, 0] == data.x_cat[mask, 0]).all()
    assert (train.x_cat[:, 0] == data.x_cat[~mask, 0]).all()
    assert (np.diff(train.x_cat[:, 0]) > 0).all() and (np.diff(holdout.x_cat[:, 0]) > 0).all()
    assert len(data.split(0.0, key=KEY)[1]) == 0
    empty = data.take(np.arange(0))
    assert [len(part) for part in empty.split(0.3, key=KEY)] == [0, 0]


def test_identical_rows_land_on_the_same_side() -> None:
    row = _data(1)
    many = EncodedData(*(np.repeat(a, 300, axis=0) for a in _arrays(row)))
    assert len(set(many.holdout_mask(0.5, key=KEY).tolist())) == 1


def test_the_split_depends_on_the_key() -> None:
    data = _data(2_000)
    a, b = data.holdout_mask(0.3, key=KEY), data.holdout_mask(0.3, key=bytes(32))
    assert (a != b).sum() > 500  # independent keys disagree on ~42% of rows


def test_seed_key_is_public_and_arguments_are_checked() -> None:
    data = _data(300)
    assert (
        data.split(0.3, key=seed_key(4))[1].x_cat == data.split(0.3, key=seed_key(4))[1].x_cat
    ).all()
    assert seed_key(4) == seed_key(4) != seed_key(5) and len(seed_key(4)) == 32
    with pytest.raises(TypeError):
        data.split(0.3, seed=4)  # type: ignore[call-arg]  (a seed is no key: use seed_key)
    with pytest.raises(ValueError, match="16 to 64 bytes"):
        data.split(0.3, key=b"short")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        data.split(1.0, key=KEY)


# ---- the key file -----------------------------------------------------------------------
def test_key_is_created_once_0600_and_reused(tmp_path: Path, fsync_log: list[str]) -> None:
    state = tmp_path / "state"  # not there yet
    key = holdout_key(state)
    path = state / KEY_FILE

    assert len(key) == KEY_BYTES and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fsync_log == ["file", "dir"]  # written durably (fedctr.durable.replace_file)
    assert holdout_key(state) == key  # a restart reads it back
    assert fsync_log == ["file", "dir"]  # ... without writing again
    assert holdout_key(tmp_path / "other") != key


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(holdout_key(tmp_path))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and set(keys) == {(tmp_path / KEY_FILE).read_bytes()}


def test_a_damaged_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"too short")
    with pytest.raises(HoldoutKeyError, match="32 bytes"):
        holdout_key(tmp_path)
    assert (tmp_path / KEY_FILE).read_bytes() == b"too short"


def test_the_stored_key_gives_the_same_split_after_a_restart(tmp_path: Path) -> None:
    data = _data(1_000)
    first = data.holdout_mask(0.2, key=holdout_key(tmp_path))
    again = data.holdout_mask(0.2, key=holdout_key(tmp_path))
    assert (first == again).all()


# ---- helpers --------------------------------------------------------------------------
def _arrays(data: EncodedData) -> tuple[np.ndarray, ...]:
    return data.x_cat, data.x_num, data.x_dense, data.y


def _concat(*parts: EncodedData) -> EncodedData:
    return EncodedData(
        *(np.concatenate(arrays) for arrays in zip(*map(_arrays, parts), strict=True))
    )


def _spec(tmp_path: Path) -> FeatureSpec:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return load_spec(path)


def _csv(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("click,ad,price\n" + "\n".join(lines) + "\n")
    return path
