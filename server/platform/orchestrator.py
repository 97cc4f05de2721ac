"""One federated training run on the platform: strategy, rounds, evaluation, checkpoints.

Called by the ServerApp with a Flower ``Grid``; the same code runs under the
simulation engine and a real SuperLink. Publishing is a separate step
(:mod:`fedctr.server.platform.publishing`) so a run's outcome can be inspected before it is signed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedctr.models import CTRModel, FeatureSpec, ModelConfig, build_model
from fedctr.models.logs.reader import BadRowPolicy, EncodedData, read_partner_log
from fedctr.privacy import wire as P
from fedctr.server.platform.checkpoint import save_checkpoint
from fedctr.server.platform.evaluation import GlobalMetrics, evaluate_global
from fedctr.server.platform.ledger import PlatformLedger
from fedctr.server.platform.rounds import RoundLog
from fedctr.server.platform.strategies.accountable import AccountableStrategy
from fedctr.server.platform.strategies.registry import StrategyConfig, build_strategy
from fedctr.server.platform.strategies.round_timing import TIMING_FILE, RoundTimer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FederationPlan:
    """Everything the platform decides about one run (no partner budgets here)."""

    run_id: str
    rounds: int
    spec: FeatureSpec
    model: ModelConfig
    strategy: StrategyConfig
    work_dir: Path
    eval_data: Path | None = None
    timeout_s: float = 600.0
    seed: int = 0


@dataclass
class FederationOutcome:
    """What a run produced, before publishing."""

    plan: FederationPlan
    model: CTRModel
    round_log: RoundLog
    global_metrics: dict[int, GlobalMetrics] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def final_metrics(self) -> GlobalMetrics | None:
        return self.global_metrics[max(self.global_metrics)] if self.global_metrics else None


def initial_model(plan: FederationPlan) -> CTRModel:
    torch.manual_seed(plan.seed)
    return build_model(plan.spec, plan.model)


def run_federation(
    grid: Grid,
    plan: FederationPlan,
    *,
    ledger: PlatformLedger,
    wrap_aggregation: Callable[[Strategy], Strategy] | None = None,
) -> FederationOutcome:
    """Run ``plan.rounds`` rounds on ``grid``; checkpoint, evaluate and ledger each.

    The ledger is required: every update is checked against its signed entry and a
    registered partner key before it is aggregated (fail closed).
    ``wrap_aggregation`` wraps the Flower strategy *inside* the accountable layer, after
    replies are checked and recorded (an audit run's canary clients; never a release).
    """
    started = time.monotonic()
    model = initial_model(plan)
    round_log = RoundLog(plan.work_dir / "rounds.jsonl")
    (plan.work_dir / "rounds.jsonl").unlink(missing_ok=True)
    eval_data = _platform_eval_data(plan)
    outcome = FederationOutcome(plan=plan, model=model, round_log=round_log)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            return None
        state = arrays.to_torch_state_dict()
        record = round_log.round(server_round)
        if record.aggregated:
            save_checkpoint(plan.work_dir / "checkpoints", server_round, state)
        result = None
        if eval_data is not None:
            model.load_state_dict(state, strict=True)
            metrics = evaluate_global(model, eval_data)
            outcome.global_metrics[server_round] = metrics
            record.global_metrics = metrics.as_dict()
            result = MetricRecord(metrics.as_dict())
        ledger.record_round(record)
        round_log.flush(server_round)
        return result

    aggregation = build_strategy(plan.strategy)
    if wrap_aggregation is not None:
        aggregation = wrap_aggregation(aggregation)
    strategy: Strategy = AccountableStrategy(
        aggregation,
        round_log,
        min_partners=plan.strategy.min_partners,
        check_reply=lambda rnd, reply: ledger.entry_problem(
            run_id=plan.run_id, server_round=rnd, reply=reply
        ),
    )
    strategy = RoundTimer(strategy, plan.work_dir / TIMING_FILE)
    (plan.work_dir / TIMING_FILE).unlink(missing_ok=True)
    config = ConfigRecord(
        {
            P.RUN_ID: plan.run_id,
            P.SPEC_HASH: plan.spec.spec_hash,
            P.MODEL_CONFIG: json.dumps(plan.model.to_dict()),
            P.PROXIMAL_MU: float(plan.strategy.proximal_mu),
        }
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=plan.rounds,
        timeout=plan.timeout_s,
        train_config=config,
        evaluate_fn=evaluate_fn,
    )
    if result.arrays is not None and len(result.arrays) > 0:
        model.load_state_dict(result.arrays.to_torch_state_dict(), strict=True)
    outcome.seconds = time.monotonic() - started
    return outcome


def _platform_eval_data(plan: FederationPlan) -> EncodedData | None:
    if plan.eval_data is None:
        return None
    return read_partner_log(plan.eval_data, plan.spec, policy=BadRowPolicy.SKIP)


__all__ = ["FederationOutcome", "FederationPlan", "initial_model", "run_federation"]
