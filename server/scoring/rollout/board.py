"""The rollout's shared state: one small memory-mapped file every worker process maps.

uvicorn workers are separate processes, and a request, the ramp change after it and
the click posted back for it may each reach a different worker, so the canary share,
the rollback flag, the per-arm counters and the impressions awaiting feedback live in
a file mapping rather than in any one process:

* a header: the canary share, a generation counter (bumped by every ramp change) and
  the rollback reason;
* one row of per-arm counters per worker (each process writes only its own row, so
  no counter is ever written by two processes; readers sum the rows);
* an impression table of fixed size (direct-mapped by the impression id's hash): the
  arm and predicted probability of recent impressions, for joining feedback. No
  feature value is stored. A newer impression whose hash lands in the same slot
  replaces the older one; feedback for an evicted impression is counted as unknown,
  so memory is bounded by the table size whatever the traffic.

Writes are aligned 8-byte (or smaller) stores, which x86-64 and arm64 make atomic;
the only cross-process race is two impressions hashing to one slot at once, which
the stored 64-bit key check turns into an "unknown" feedback, not a wrong join.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

from fedctr.errors import FedctrError
from fedctr.server.scoring.rollout.split import Arm

MAGIC = 0xFEDC7A8B
MAX_WORKERS = 64
DEFAULT_IMPRESSIONS = 1 << 20  # 13 MiB of table: ~1M impressions awaiting feedback


class Counter(IntEnum):
    """Per-arm counters (float64: sums of probabilities next to counts)."""

    SERVED = 0  # scores answered on this arm
    SCORE_SUM = 1  # sum of the scores answered (mean prediction = SCORE_SUM / SERVED)
    CONSERVATIVE = 2  # answered with the card's base rate (breaker open)
    ERRORS = 3  # requests routed to this arm that failed while scoring
    RECORDED = 4  # impressions with an id, recorded for feedback
    EXPECTED = 5  # sum of the recorded impressions' predicted click probabilities
    VARIANCE = 6  # sum of p(1-p) over them: the click count's variance if calibrated
    CLICKS = 7  # feedback: clicks joined to a recorded impression (each counted once)
    CONVERSIONS = 8  # feedback: conversions joined likewise
    UNKNOWN = 9  # feedback whose impression was not found (never served, or evicted)
    BREAKER_TRIPS = 10  # this arm's circuit breaker trips (per worker, cumulative)


N_COUNTERS = len(Counter)
N_ARMS = len(Arm)


class Rollback(IntEnum):
    """Why the canary was rolled back (0: it was not)."""

    NONE = 0
    CALIBRATION = 1
    BREAKER = 2
    OPERATOR = 3


class BoardError(FedctrError):
    """The rollout state file is missing, foreign or full."""


# header: magic, share, generation, rollback reason, rollback time, canary version id
_HEADER = np.dtype(
    [
        ("magic", "<u8"),
        ("share", "<f8"),
        ("generation", "<u8"),
        ("rollback", "<i8"),
        ("rollback_at", "<f8"),
        ("capacity", "<u8"),
    ]
)
_HEADER_BYTES = 64
_PIDS_BYTES = MAX_WORKERS * 8
_COUNTER_BYTES = MAX_WORKERS * N_ARMS * N_COUNTERS * 8


def _size(capacity: int) -> int:
    return _HEADER_BYTES + _PIDS_BYTES + _COUNTER_BYTES + capacity * (8 + 4 + 1 + 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Recorded:
    """A recorded impression found by feedback."""

    arm: Arm
    prediction: float


class Board:
    """One process's view of the shared rollout state (see the module docstring)."""

    def __init__(self, buffer: mmap.mmap, path: Path | None) -> None:
        self._mm = buffer
        self.path = path
        self._header = np.frombuffer(buffer, dtype=_HEADER, count=1, offset=0)
        if int(self._header["magic"][0]) != MAGIC:
            raise BoardError(f"{path}: not a fedctr rollout state file")
        capacity = int(self._header["capacity"][0])
        offset = _HEADER_BYTES
        self._pids = np.frombuffer(buffer, dtype="<i8", count=MAX_WORKERS, offset=offset)
        offset += _PIDS_BYTES
        self._counters = np.frombuffer(
            buffer, dtype="<f8", count=MAX_WORKERS * N_ARMS * N_COUNTERS, offset=offset
        ).reshape(MAX_WORKERS, N_ARMS, N_COUNTERS)
        offset += _COUNTER_BYTES
        self._keys = np.frombuffer(buffer, dtype="<u8", count=capacity, offset=offset)
        offset += capacity * 8
        self._preds = np.frombuffer(buffer, dtype="<f4", count=capacity, offset=offset)
        offset += capacity * 4
        self._arms = np.frombuffer(buffer, dtype="u1", count=capacity, offset=offset)
        offset += capacity
        self._flags = np.frombuffer(buffer, dtype="u1", count=capacity, offset=offset)
        self.capacity = capacity
        self._row: np.ndarray | None = None

    # ---- creation -----------------------------------------------------------------

    @staticmethod
    def _initialise(buffer: mmap.mmap, capacity: int, share: float) -> None:
        header = np.frombuffer(buffer, dtype=_HEADER, count=1, offset=0)
        header["share"] = share
        header["capacity"] = capacity
        header["magic"] = MAGIC

    @classmethod
    def create(
        cls, path: Path | None, *, share: float, capacity: int = DEFAULT_IMPRESSIONS
    ) -> Board:
        """A fresh board: in the file ``path`` (several workers open it), or anonymous
        memory when ``path`` is None (one process)."""
        if capacity < 1:
            raise BoardError(f"impression table capacity must be >= 1, got {capacity}")
        size = _size(capacity)
        if path is None:
            buffer = mmap.mmap(-1, size)
        else:
            with open(path, "w+b") as f:
                f.truncate(size)
                buffer = mmap.mmap(f.fileno(), size)
        cls._initialise(buffer, capacity, share)
        return cls(buffer, path)

    @classmethod
    def open(cls, path: Path) -> Board:
        """Map the board a parent process created at ``path``."""
        try:
            with open(path, "r+b") as f:
                buffer = mmap.mmap(f.fileno(), 0)
        except (OSError, ValueError) as exc:
            raise BoardError(f"cannot map rollout state file {path}: {exc}") from exc
        return cls(buffer, path)

    def close(self) -> None:
        """Release the mapping (views first: numpy holds exports of the buffer)."""
        self._row = None
        del self._header, self._pids, self._counters, self._keys, self._preds
        del self._arms, self._flags
        self._mm.close()

    # ---- this worker's counters -----------------------------------------------------

    def _claim_row(self) -> np.ndarray:
        """This process's counter row: its own, a dead worker's (whose counts it keeps
        adding to), or a free one; claimed under an exclusive file lock."""
        pid = os.getpid()
        lock = open(self.path, "r+b") if self.path is not None else None  # noqa: SIM115
        try:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            pids = self._pids
            mine = np.flatnonzero(pids == pid)
            if mine.size:
                slot = int(mine[0])
            else:
                free = [i for i, p in enumerate(pids.tolist()) if p == 0 or not _alive(p)]
                if not free:
                    raise BoardError(f"more than {MAX_WORKERS} worker processes share {self.path}")
                slot = free[0]
                pids[slot] = pid
        finally:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
                lock.close()
        return self._counters[slot]

    def row(self) -> np.ndarray:
        """``[arm, counter]`` float64 view this process adds to."""
        if self._row is None:
            self._row = self._claim_row()
        return self._row

    # ---- the shared header ------------------------------------------------------------

    @property
    def share(self) -> float:
        return float(self._header["share"][0])

    @property
    def generation(self) -> int:
        return int(self._header["generation"][0])

    @property
    def rollback(self) -> Rollback:
        return Rollback(int(self._header["rollback"][0]))

    @property
    def rolled_back_at(self) -> float | None:
        at = float(self._header["rollback_at"][0])
        return at if at > 0 else None

    def set_share(self, share: float) -> int:
        """Ramp: the canary now takes ``share`` of keyed traffic; the new generation."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"canary share must be in [0, 1], got {share}")
        if self.rollback is not Rollback.NONE and share > 0:
            raise BoardError(
                f"the canary was rolled back ({self.rollback.name.lower()}); load a new "
                "canary to ramp again"
            )
        self._header["share"] = share
        self._header["generation"] += 1
        return self.generation

    def roll_back(self, reason: Rollback) -> bool:
        """Send all traffic to control; False if it was already rolled back."""
        if self.rollback is not Rollback.NONE:
            return False
        self._header["share"] = 0.0
        self._header["rollback_at"] = time.time()
        self._header["rollback"] = int(reason)
        self._header["generation"] += 1
        return True

    def reset(self, share: float) -> None:
        """A new canary: counters, table and rollback state start over."""
        self._counters[:] = 0.0
        self._keys[:] = 0
        self._flags[:] = 0
        self._header["rollback"] = 0
        self._header["rollback_at"] = 0.0
        self._header["share"] = share
        self._header["generation"] += 1

    # ---- impressions and feedback -------------------------------------------------------

    def record(self, key: int, arm: Arm, prediction: float) -> None:
        """Remember an impression (by its 64-bit id hash) for feedback; counts it."""
        slot = key % self.capacity
        self._keys[slot] = 0  # invalidate first: a reader never pairs old key, new value
        self._preds[slot] = prediction
        self._arms[slot] = int(arm)
        self._flags[slot] = 0
        self._keys[slot] = key | 1  # 0 marks an empty slot
        row = self.row()[int(arm)]
        row[Counter.RECORDED] += 1.0
        row[Counter.EXPECTED] += prediction
        row[Counter.VARIANCE] += prediction * (1.0 - prediction)

    def feedback(self, key: int, *, clicked: bool, converted: bool) -> Recorded | None:
        """Join a click/conversion to its impression; each outcome counts once."""
        slot = key % self.capacity
        if int(self._keys[slot]) != key | 1:
            self.row()[int(Arm.CONTROL)][Counter.UNKNOWN] += 1.0
            return None
        arm = Arm(int(self._arms[slot]))
        found = Recorded(arm, float(self._preds[slot]))
        flags = int(self._flags[slot])
        row = self.row()[int(arm)]
        if clicked and not flags & 1:
            row[Counter.CLICKS] += 1.0
            flags |= 1
        if converted and not flags & 2:
            row[Counter.CONVERSIONS] += 1.0
            flags |= 2
        self._flags[slot] = flags
        return found

    def add(self, arm: Arm, counter: Counter, value: float = 1.0) -> None:
        self.row()[int(arm)][counter] += value

    def totals(self) -> np.ndarray:
        """``[arm, counter]`` summed over every worker that has written."""
        return self._counters.sum(axis=0)


__all__ = [
    "DEFAULT_IMPRESSIONS",
    "Board",
    "BoardError",
    "Counter",
    "Recorded",
    "Rollback",
]
