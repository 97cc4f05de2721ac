"""The A/B rollout's parts: the sticky split, the shared board, the per-arm figures
and the rollback policy (no server here; tests/server/test_api_rollout.py serves)."""

from __future__ import annotations

import math
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from fedctr.server.scoring.rollout import (
    Arm,
    ArmStats,
    Board,
    BoardError,
    Counter,
    Rollback,
    RollbackPolicy,
    TrafficSplit,
    calibration_interval,
    wilson,
)

SALT = bytes(range(16))
KEYS = [f"imp-{i}" for i in range(100_000)]


def canary_fraction(split: TrafficSplit, share: float) -> float:
    return sum(split.arm(k, share) is Arm.CANARY for k in KEYS) / len(KEYS)


@pytest.mark.parametrize("share", [0.01, 0.1, 0.5])
def test_split_matches_the_share_within_binomial_error(share: float) -> None:
    observed = canary_fraction(TrafficSplit(SALT), share)
    sigma = math.sqrt(share * (1 - share) / len(KEYS))
    assert abs(observed - share) < 4 * sigma


def test_split_is_deterministic_and_sticky_as_the_share_ramps() -> None:
    """Same salt, same arm, in any process; raising the share only moves keys to the
    canary; another salt gives another assignment."""
    a, b = TrafficSplit(SALT), TrafficSplit(bytes(SALT))
    arms = {share: [a.arm(k, share) for k in KEYS[:20_000]] for share in (0.01, 0.1, 0.5, 1.0)}
    assert arms[0.1] == [b.arm(k, 0.1) for k in KEYS[:20_000]]
    for low, high in ((0.01, 0.1), (0.1, 0.5), (0.5, 1.0)):
        moved_back = [
            k for k, lo, hi in zip(KEYS, arms[low], arms[high], strict=False)
            if lo is Arm.CANARY and hi is Arm.CONTROL
        ]  # fmt: skip
        assert moved_back == []
    assert all(arm is Arm.CANARY for arm in arms[1.0])
    other = TrafficSplit(b"\xff" * 16)
    assert [other.arm(k, 0.5) for k in KEYS[:2000]] != arms[0.5][:2000]


def test_requests_without_a_key_stay_on_control() -> None:
    assert TrafficSplit(SALT).arm(None, 1.0) is Arm.CONTROL


def _child_serves(path: str, n: int) -> None:
    board = Board.open(Path(path))
    for i in range(n):
        board.add(Arm.CANARY, Counter.SERVED)
        board.record(1000 + 2 * i, Arm.CANARY, 0.25)
    board.close()


def test_workers_share_one_board_and_each_writes_its_own_row(tmp_path: Path) -> None:
    """Counters from two processes add up; a share set in one is seen by the other."""
    path = tmp_path / "rollout.bin"
    board = Board.create(path, share=0.1, capacity=4096)
    board.add(Arm.CANARY, Counter.SERVED, 5)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_child_serves, args=(str(path), 100))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    totals = board.totals()
    assert totals[Arm.CANARY, Counter.SERVED] == 105
    assert totals[Arm.CANARY, Counter.RECORDED] == 100
    assert totals[Arm.CANARY, Counter.EXPECTED] == pytest.approx(25.0)
    other = Board.open(path)
    other.set_share(0.5)
    assert board.share == 0.5 and board.generation == 1
    found = board.feedback(1000 + 2 * 7, clicked=True, converted=False)  # the child's
    assert found is not None and found.arm is Arm.CANARY and found.prediction == 0.25
    other.close()
    board.close()


def test_feedback_joins_once_and_unknown_impressions_are_counted() -> None:
    board = Board.create(None, share=0.0, capacity=1024)
    board.record(77, Arm.CONTROL, 0.1)
    for _ in range(3):  # a retried post counts once
        assert board.feedback(77, clicked=True, converted=False) is not None
    board.feedback(77, clicked=False, converted=True)
    assert board.feedback(78, clicked=True, converted=False) is None
    totals = board.totals()
    assert totals[Arm.CONTROL, Counter.CLICKS] == 1
    assert totals[Arm.CONTROL, Counter.CONVERSIONS] == 1
    assert totals[Arm.CONTROL, Counter.UNKNOWN] == 1


def test_memory_is_bounded_by_the_table_newer_impressions_evict_older() -> None:
    """A table of 1,024 slots keeps at most 1,024 impressions, whatever the traffic."""
    board = Board.create(None, share=0.0, capacity=1024)
    rng = np.random.default_rng(0)
    keys = [int(k) for k in rng.integers(1, 2**62, size=20_000)]
    for k in keys:
        board.record(k, Arm.CONTROL, 0.05)
    joined = sum(board.feedback(k, clicked=True, converted=False) is not None for k in keys)
    assert joined <= 1024
    assert all(board.feedback(k, clicked=True, converted=False) is not None for k in keys[-50:])


def test_a_rolled_back_canary_cannot_be_ramped_again() -> None:
    board = Board.create(None, share=0.2)
    assert board.roll_back(Rollback.CALIBRATION)
    assert board.share == 0.0 and board.rollback is Rollback.CALIBRATION
    assert not board.roll_back(Rollback.BREAKER)  # the first reason stays
    with pytest.raises(BoardError, match="rolled back"):
        board.set_share(0.1)


def test_a_file_that_is_not_a_board_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(BoardError, match="not a fedctr rollout state file"):
        Board.open(path)


def test_wilson_interval_matches_the_textbook_value() -> None:
    low, high = wilson(10, 100)  # Wilson 95% for 10/100: (0.0552, 0.1744)
    assert low == pytest.approx(0.05523, abs=1e-4) and high == pytest.approx(0.17437, abs=1e-4)


def _clicks(rng: np.random.Generator, p: np.ndarray, scale: float) -> tuple[float, float, float]:
    """Clicks drawn with true rates ``p``; the served predictions are ``p * scale``."""
    served = np.clip(p * scale, 0, 1)
    clicks = float(rng.binomial(1, p).sum())
    return clicks, float(served.sum()), float((served * (1 - served)).sum())


def test_calibration_interval_covers_a_calibrated_model_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.1, size=2000)
    covered = 0
    for _ in range(400):
        clicks, expected, variance = _clicks(rng, p, 1.0)
        low, high = calibration_interval(clicks, expected, variance)
        covered += low <= 1.0 <= high
    assert 0.92 <= covered / 400 <= 0.98


def _stats(clicks: float, expected: float, trips: int = 0) -> ArmStats:
    c = np.zeros(len(Counter))
    c[Counter.CLICKS], c[Counter.EXPECTED], c[Counter.BREAKER_TRIPS] = clicks, expected, trips
    c[Counter.RECORDED] = c[Counter.SERVED] = 1000
    return ArmStats.from_counters(c)


def test_policy_rolls_back_a_canary_predicting_twice_the_clicks() -> None:
    """Predictions twice the truth: rolled back once ~30 clicks are expected."""
    rng = np.random.default_rng(2)
    policy = RollbackPolicy()
    p = rng.uniform(0.01, 0.1, size=100_000)
    served = 2 * p
    clicks = rng.binomial(1, p)
    expected = np.cumsum(served)
    variance = np.cumsum(served * (1 - served))
    observed = np.cumsum(clicks)
    first = next(
        i for i in range(len(p))
        if policy.verdict(_stats(observed[i], expected[i]), variance[i]) is Rollback.CALIBRATION
    )  # fmt: skip
    assert expected[first] < 120  # requests: ~1,100 recorded impressions at 11% mean score


def test_policy_keeps_a_calibrated_canary_over_a_long_replay() -> None:
    """False alarms of a calibrated canary checked after every impression of 50
    replays of 20,000 impressions: none (the README states the figure)."""
    rng = np.random.default_rng(3)
    policy = RollbackPolicy()
    alarms = 0
    for _ in range(50):
        p = rng.uniform(0.01, 0.1, size=20_000)
        clicks = np.cumsum(rng.binomial(1, p))
        expected, variance = np.cumsum(p), np.cumsum(p * (1 - p))
        z = (clicks - expected) / np.sqrt(variance)
        ok = expected >= policy.min_expected_clicks
        low = (clicks - policy.z * np.sqrt(variance)) / expected
        high = (clicks + policy.z * np.sqrt(variance)) / expected
        alarms += bool(np.any(ok & ((high < policy.band[0]) | (low > policy.band[1]))))
        assert np.isfinite(z).all()
    assert alarms == 0


def test_policy_rolls_back_on_a_breaker_trip_at_once() -> None:
    assert RollbackPolicy().verdict(_stats(0, 0, trips=1), 0.0) is Rollback.BREAKER
