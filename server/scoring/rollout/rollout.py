"""The serving side of a canary rollout: route, record, join feedback, roll back.

A :class:`Rollout` knows nothing of models: the scoring handlers ask it which arm a
request goes to, score with that arm's model, and tell it what was served. Its state
is the shared :class:`~.board.Board`, so every uvicorn worker routes with the same
share and every rollback reaches all of them at their next request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from fedctr.server.scoring.rollout.board import Board, Counter, Recorded, Rollback
from fedctr.server.scoring.rollout.policy import RollbackPolicy
from fedctr.server.scoring.rollout.split import Arm, TrafficSplit, bucket, threshold
from fedctr.server.scoring.rollout.stats import ArmStats

log = logging.getLogger("fedctr.serve.rollout")
SplitKey = Literal["impression_id", "user_id"]


@dataclass(frozen=True)
class Routed:
    """Where one request went, and the impression's table key (None: not recorded)."""

    arm: Arm
    impression: int | None


class Rollout:
    """Two arms over one shared board (see the module docstring)."""

    def __init__(
        self,
        board: Board,
        split: TrafficSplit,
        *,
        split_key: SplitKey,
        policy: RollbackPolicy,
        has_canary: bool,
    ) -> None:
        self.board = board
        self.split = split
        self.split_key = split_key
        self.policy = policy
        self.has_canary = has_canary
        self._trips_seen = {Arm.CONTROL: 0, Arm.CANARY: 0}

    def route(self, impression_id: str | None, user_id: str | None) -> Routed:
        """The arm of a request keyed by its ids; the impression hash for feedback."""
        impression = None if impression_id is None else bucket(impression_id, self.split.salt)
        share = self.board.share if self.has_canary else 0.0
        if share <= 0.0:
            return Routed(Arm.CONTROL, impression)
        if self.split_key == "impression_id":
            position = impression
        else:
            position = None if user_id is None else bucket(user_id, self.split.salt)
        if position is None:
            return Routed(Arm.CONTROL, impression)
        return Routed(Arm.CANARY if position < threshold(share) else Arm.CONTROL, impression)

    def served(self, routed: Routed, score: float, *, conservative: bool, trips: int) -> None:
        """Count one answered request; ``trips``: that arm's breaker trips so far."""
        arm = routed.arm
        row = self.board.row()[int(arm)]
        row[Counter.SERVED] += 1.0
        row[Counter.SCORE_SUM] += score
        if conservative:
            row[Counter.CONSERVATIVE] += 1.0
        if routed.impression is not None:
            self.board.record(routed.impression, arm, score)
        if trips != self._trips_seen[arm]:  # fewer: a reloaded model, a fresh breaker
            seen = self._trips_seen[arm] if trips > self._trips_seen[arm] else 0
            row[Counter.BREAKER_TRIPS] += trips - seen
            self._trips_seen[arm] = trips
            if arm is Arm.CANARY:
                self.check()

    def failed(self, arm: Arm) -> None:
        self.board.add(arm, Counter.ERRORS)

    def feedback(self, impression_id: str, *, clicked: bool, converted: bool) -> Recorded | None:
        """Join an outcome to its impression, then re-check the rollback policy."""
        found = self.board.feedback(
            bucket(impression_id, self.split.salt), clicked=clicked, converted=converted
        )
        if found is not None and found.arm is Arm.CANARY:
            self.check()
        return found

    def arms(self) -> dict[Arm, ArmStats]:
        totals = self.board.totals()
        return {arm: ArmStats.from_counters(totals[int(arm)]) for arm in Arm}

    def check(self) -> Rollback:
        """Roll the canary back if the policy says so; the reason (NONE: kept)."""
        if not self.has_canary or self.board.rollback is not Rollback.NONE:
            return self.board.rollback
        totals = self.board.totals()[int(Arm.CANARY)]
        verdict = self.policy.verdict(
            ArmStats.from_counters(totals), variance=float(totals[Counter.VARIANCE])
        )
        if verdict is not Rollback.NONE and self.board.roll_back(verdict):
            log.warning("canary rolled back: %s", verdict.name.lower())
        return self.board.rollback

    def set_share(self, share: float) -> int:
        if not self.has_canary and share > 0:
            raise ValueError("no canary is loaded (fedctr serve --canary VERSION)")
        generation = self.board.set_share(share)
        log.info("canary share set to %g (generation %d)", share, generation)
        return generation

    def report(self) -> dict[str, Any]:
        """The rollout's state and both arms' figures (``GET /v1/rollout``)."""
        rollback = self.board.rollback
        return {
            "canary_share": self.board.share,
            "generation": self.board.generation,
            "split_key": self.split_key,
            "rolled_back": None if rollback is Rollback.NONE else rollback.name.lower(),
            "rolled_back_at": self.board.rolled_back_at,
            "policy": {
                "calibration_band": list(self.policy.band),
                "z": self.policy.z,
                "min_expected_clicks": self.policy.min_expected_clicks,
                "on_breaker": self.policy.on_breaker,
            },
            "arms": {arm.label: stats.to_json() for arm, stats in self.arms().items()},
        }


__all__ = ["Rollout", "Routed", "SplitKey"]
