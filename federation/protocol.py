"""What travels in Flower messages between the ServerApp and partner ClientApps.

Server -> partner: record names and config keys, defined here. Partner -> server:
only what the wire contract in :mod:`fedctr.privacy.wire` declares (typed replies, error
codes, reason classes); the names below are re-exported from there so both sides
and the strategies agree.
"""

from __future__ import annotations

from fedctr.privacy.wire import ARRAYS, METRICS, REPORT, ErrorCode

CONFIG = "config"

# Server -> partner (ConfigRecord "config"): run-level facts, never a privacy budget.
SERVER_ROUND = "server-round"
RUN_ID = "run-id"
SPEC_HASH = "spec-hash"
MODEL_CONFIG = "model-config"  # JSON of models.ModelConfig
PROXIMAL_MU = "proximal-mu"

# Partner -> server (MetricRecord "metrics"), declared in fedctr.privacy.wire.TRAIN_REPLY_FIELDS.
AGGREGATION_WEIGHT = "aggregation-weight"  # FedAvg's weighted_by_key: declared, not a count
EPSILON = "epsilon"
DELTA = "delta"
MAX_AGGREGATED = (EPSILON, DELTA)  # privacy metrics are the worst partner's, never averaged
PARTNER_ID = "partner-id"

__all__ = [
    "AGGREGATION_WEIGHT",
    "ARRAYS",
    "CONFIG",
    "DELTA",
    "EPSILON",
    "MAX_AGGREGATED",
    "METRICS",
    "MODEL_CONFIG",
    "PARTNER_ID",
    "PROXIMAL_MU",
    "REPORT",
    "RUN_ID",
    "SERVER_ROUND",
    "SPEC_HASH",
    "ErrorCode",
]
