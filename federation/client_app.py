"""The partner's Flower ClientApp: translate messages to and from the partner node.

Which partner this process serves comes from the SuperNode's node config
(``--node-config 'partner-config="/path/partner.toml"'``). Flower's simulation gives
virtual nodes only a partition id, so the simulation launcher lists the partner
configs in ``FEDCTR_SIM_PARTNERS`` (os.pathsep-separated) and partition ``i`` is
partner ``i``. Either way the budget comes from the partner's own file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.config import PartnerConfig, load_partner_config
from clients.errors import DataFileError, PartnerConfigError
from clients.node import EvalReport, PartnerNode
from fedctr.errors import FedctrError
from federation import protocol as P
from federation.packing import packing_mod
from models import ModelConfig, SpecMismatchError
from privacy import BudgetExceededError

logger = logging.getLogger(__name__)

PARTNER_CONFIG_KEY = "partner-config"
SIM_PARTNERS_ENV = "FEDCTR_SIM_PARTNERS"

app = ClientApp(mods=[packing_mod])


def partner_config_for(context: Context) -> PartnerConfig:
    """The partner config of the node running this ClientApp."""
    path = context.node_config.get(PARTNER_CONFIG_KEY)
    if not path:
        listed = [p for p in os.environ.get(SIM_PARTNERS_ENV, "").split(os.pathsep) if p]
        pid = context.node_config.get("partition-id")
        if pid is None or int(pid) >= len(listed):
            raise PartnerConfigError(
                f"this node has no '{PARTNER_CONFIG_KEY}' in its node config; start the "
                f"SuperNode with --node-config '{PARTNER_CONFIG_KEY}=\"/path/partner.toml\"'"
            )
        path = listed[int(pid)]
    return load_partner_config(str(path))


def _error_reply(msg: Message, exc: Exception) -> Message:
    if isinstance(exc, BudgetExceededError):
        code = P.ERROR_BUDGET_REFUSED
    elif isinstance(exc, DataFileError):
        code = P.ERROR_BAD_DATA
    elif isinstance(exc, SpecMismatchError):
        code = P.ERROR_SPEC_MISMATCH
    else:
        code = P.ERROR_PARTNER
    logger.warning("%s: %s", P.ERROR_NAMES[code], exc)
    return Message(Error(code=code, reason=str(exc)), reply_to=msg)


def _config(msg: Message) -> tuple[ConfigRecord, ModelConfig]:
    config = msg.content[P.CONFIG]
    return config, ModelConfig.from_dict(json.loads(str(config[P.MODEL_CONFIG])))


def _evaluation_values(report: EvalReport) -> dict[str, float | int]:
    """What a partner reports of an evaluation: the same keys in either message kind."""
    return {
        P.NUM_EXAMPLES: report.num_examples,
        P.AUC: report.auc,
        P.LOGLOSS: report.logloss,
        P.MEAN_PREDICTION: report.mean_prediction,
    }


def _evaluation_record(report: EvalReport) -> ConfigRecord:
    return ConfigRecord(_evaluation_values(report))


def _evaluate_first(
    node: PartnerNode, weights: dict, model_config: ModelConfig, spec_hash: str
) -> ConfigRecord | None:
    """Evaluate the received global model before training it (``evaluate-first``).

    Unusable data or a spec mismatch fail the whole message (training would fail
    the same way); any other evaluation problem only drops the evaluation.
    """
    try:
        report = node.evaluate(weights, model_config=model_config, spec_hash=spec_hash)
    except (DataFileError, SpecMismatchError):
        raise
    except FedctrError as exc:
        logger.warning("evaluation before training skipped: %s", exc)
        return None
    return _evaluation_record(report)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One local DP round on the partner's data; refusals are error replies.

    With ``evaluate-first`` in the config, the received model is first evaluated
    on the holdout and the evaluation travels back in the same reply.
    """
    started = time.perf_counter()
    evaluation = None
    try:
        node = PartnerNode(partner_config_for(context))
        config, model_config = _config(msg)
        weights = msg.content[P.ARRAYS].to_torch_state_dict()
        if bool(config.get(P.EVALUATE_FIRST, False)):
            evaluation = _evaluate_first(node, weights, model_config, str(config[P.SPEC_HASH]))
        weights, report = node.train(
            weights,
            model_config=model_config,
            spec_hash=str(config[P.SPEC_HASH]),
            run_id=str(config[P.RUN_ID]),
            server_round=int(config[P.SERVER_ROUND]),
            proximal_mu=float(config.get(P.PROXIMAL_MU, 0.0)),
        )
    except FedctrError as exc:
        return _error_reply(msg, exc)
    release = report.release
    metrics = MetricRecord(
        {
            P.NUM_EXAMPLES: report.num_examples,
            P.TRAIN_LOSS: report.train_loss,
            P.EPSILON: report.epsilon if math.isfinite(report.epsilon) else math.inf,
            P.DELTA: report.delta,
        }
    )
    details = ConfigRecord(
        {
            P.PARTNER_ID: report.partner_id,
            "accountant": report.accountant,
            "dp-implementation": report.dp_implementation or "none",
            "base-model-hash": report.base_model_hash,
            "update-hash": report.update_hash,
            "rows-skipped": report.rows_skipped,
            "noise-multiplier": release.noise_multiplier if release else 0.0,
            "sample-rate": release.sample_rate if release else 0.0,
            "steps": release.steps if release else 0,
            "max-grad-norm": release.max_grad_norm if release else 0.0,
            "budget-epsilon": node.config.privacy.epsilon,
            "budget-delta": node.config.privacy.delta,
            "unit-of-privacy": "example",
            "ledger-entry": report.ledger_entry or "",
            P.COMPUTE_SECONDS: time.perf_counter() - started,
        }
    )
    content = RecordDict({P.ARRAYS: ArrayRecord(weights), P.METRICS: metrics, P.REPORT: details})
    if evaluation is not None:
        content[P.EVALUATION] = evaluation
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """AUC and log loss of the received global model on the partner's holdout."""
    started = time.perf_counter()
    try:
        node = PartnerNode(partner_config_for(context))
        config, model_config = _config(msg)
        report = node.evaluate(
            msg.content[P.ARRAYS].to_torch_state_dict(),
            model_config=model_config,
            spec_hash=str(config[P.SPEC_HASH]),
        )
    except FedctrError as exc:
        return _error_reply(msg, exc)
    metrics = MetricRecord(_evaluation_values(report))
    details = ConfigRecord(
        {P.PARTNER_ID: report.partner_id, P.COMPUTE_SECONDS: time.perf_counter() - started}
    )
    return Message(content=RecordDict({P.METRICS: metrics, P.REPORT: details}), reply_to=msg)


__all__ = ["PARTNER_CONFIG_KEY", "SIM_PARTNERS_ENV", "app", "partner_config_for"]
