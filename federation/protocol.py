"""What travels in Flower messages between the ServerApp and partner ClientApps.

One place for record names, config keys and error codes, so both sides (and the
strategies that read replies) agree. Imports nothing from fedctr.
"""

from __future__ import annotations

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
REPORT = "report"

# Server -> partner (ConfigRecord "config"): run-level facts, never a privacy budget.
SERVER_ROUND = "server-round"
RUN_ID = "run-id"
SPEC_HASH = "spec-hash"
MODEL_CONFIG = "model-config"  # JSON of models.ModelConfig
PROXIMAL_MU = "proximal-mu"
# Evaluate the received global model before training it, and send the evaluation in
# the train reply (saves a message round trip per round; see EvaluateInTrain).
EVALUATE_FIRST = "evaluate-first"

# Partner -> server (MetricRecord "metrics").
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
EPSILON = "epsilon"
DELTA = "delta"
AUC = "auc"
LOGLOSS = "logloss"
MEAN_PREDICTION = "mean-prediction"
MAX_AGGREGATED = (EPSILON, DELTA)  # privacy metrics are the worst partner's, never averaged

# Partner -> server (ConfigRecord "report").
PARTNER_ID = "partner-id"
COMPUTE_SECONDS = "compute-seconds"  # the partner's own work on this message (timing)
# Partner -> server (ConfigRecord "evaluation" in a train reply): AUC, LOGLOSS,
# MEAN_PREDICTION and NUM_EXAMPLES of the received model on the partner's holdout.
EVALUATION = "evaluation"

# Error codes of fedctr refusals (Flower's own codes are small integers).
ERROR_BUDGET_REFUSED = 1001
ERROR_BAD_DATA = 1002
ERROR_SPEC_MISMATCH = 1003
ERROR_PARTNER = 1004
ERROR_PACKING = 1005  # packed arrays that do not match their layout (federation.packing)
ERROR_NAMES = {
    ERROR_BUDGET_REFUSED: "budget-refused",
    ERROR_BAD_DATA: "bad-data",
    ERROR_SPEC_MISMATCH: "spec-mismatch",
    ERROR_PARTNER: "partner-error",
    ERROR_PACKING: "unreadable-arrays",
}

__all__ = [
    "ARRAYS",
    "AUC",
    "COMPUTE_SECONDS",
    "CONFIG",
    "DELTA",
    "EPSILON",
    "ERROR_BAD_DATA",
    "ERROR_BUDGET_REFUSED",
    "ERROR_NAMES",
    "ERROR_PACKING",
    "ERROR_PARTNER",
    "ERROR_SPEC_MISMATCH",
    "EVALUATE_FIRST",
    "EVALUATION",
    "LOGLOSS",
    "MAX_AGGREGATED",
    "MEAN_PREDICTION",
    "METRICS",
    "MODEL_CONFIG",
    "NUM_EXAMPLES",
    "PARTNER_ID",
    "PROXIMAL_MU",
    "REPORT",
    "RUN_ID",
    "SERVER_ROUND",
    "SPEC_HASH",
    "TRAIN_LOSS",
]
