"""Distributed DP: partners add shares of discrete (Skellam) noise under secure
aggregation, so that only the sum the platform unmasks carries the full noise."""

from fedctr.privacy.distributed.accounting import calibrate, epsilon
from fedctr.privacy.distributed.mechanism import SkellamRound, sensitivities
from fedctr.privacy.distributed.noise import skellam_noise

__all__ = ["SkellamRound", "calibrate", "epsilon", "sensitivities", "skellam_noise"]
