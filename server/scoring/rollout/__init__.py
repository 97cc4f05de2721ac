"""A/B and canary serving: two verified model versions, a sticky split, feedback, rollback.

``split`` assigns keys to arms, ``board`` is the state every worker shares, ``stats``
turns its counters into figures with intervals, ``policy`` decides rollbacks and
``rollout`` ties them together for the scoring handlers.
"""

from fedctr.server.scoring.rollout.board import Board, BoardError, Counter, Rollback
from fedctr.server.scoring.rollout.policy import RollbackPolicy
from fedctr.server.scoring.rollout.rollout import Rollout, Routed, SplitKey
from fedctr.server.scoring.rollout.split import Arm, TrafficSplit, bucket, threshold
from fedctr.server.scoring.rollout.stats import ArmStats, calibration_interval, wilson

__all__ = [
    "Arm",
    "ArmStats",
    "Board",
    "BoardError",
    "Counter",
    "Rollback",
    "RollbackPolicy",
    "Rollout",
    "Routed",
    "SplitKey",
    "TrafficSplit",
    "bucket",
    "calibration_interval",
    "threshold",
    "wilson",
]
