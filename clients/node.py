"""The partner node: one round of local DP training or evaluation, under its own budget.

Order of a training round, chosen so a crash can never under-count spending:
plan the release -> check it against the partner's budget (refuse if over) ->
train -> record what Opacus' accountant saw -> persist state (fsync) -> write the
signed ledger entry -> only then hand the update to Flower.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace

import torch

from clients.config import PartnerConfig
from clients.data import EncodedData, read_partner_log
from clients.errors import PartnerError
from clients.release_log import ReleaseLog
from clients.state import PartnerState, load_state, save_state
from clients.trainer import train_locally
from models import (
    CTRModel,
    FeatureSpec,
    ModelConfig,
    SpecMismatchError,
    build_model,
    load_spec,
    log_loss,
    predict_proba,
    roc_auc,
    state_dict_sha256,
)
from privacy import (
    BudgetExceededError,
    DPSGDRound,
    calibrate_noise_multiplier,
    poisson_schedule,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainReport:
    """What the node sends back after a training round (besides the weights)."""

    partner_id: str
    num_examples: int
    train_loss: float
    epsilon: float
    delta: float
    release: DPSGDRound | None
    accountant: str
    dp_implementation: str | None
    base_model_hash: str
    update_hash: str
    rows_skipped: int
    ledger_entry: str | None = None  # the signed ledger entry, JSON


@dataclass(frozen=True)
class EvalReport:
    """Local evaluation of the global model on the partner's own holdout."""

    partner_id: str
    num_examples: int
    auc: float
    logloss: float
    mean_prediction: float


class PartnerNode:
    """A partner's node: owns its config, data, spend state and ledger."""

    def __init__(self, config: PartnerConfig, *, release_log: ReleaseLog | None = None) -> None:
        self.config = config
        self.spec: FeatureSpec = load_spec(config.spec)
        self._splits: tuple[EncodedData, EncodedData] | None = None
        self._release_log = release_log or ReleaseLog.for_config(config)

    # ---- data ----------------------------------------------------------
    def splits(self) -> tuple[EncodedData, EncodedData]:
        """(train, holdout) of the partner's log; read once per process."""
        if self._splits is None:
            data = read_partner_log(self.config.data, self.spec, policy=self.config.bad_rows)
            logger.info("partner %s: %s", self.config.partner_id, data.report.summary())
            t = self.config.training
            self._splits = data.split(t.holdout_fraction, seed=t.seed)
        return self._splits

    def check_spec(self, spec_hash: str) -> None:
        if spec_hash != self.spec.spec_hash:
            raise SpecMismatchError(
                f"the platform trains with feature spec {spec_hash[:12]}, partner "
                f"'{self.config.partner_id}' has {self.spec.spec_hash[:12]} ({self.config.spec}); "
                "both must use the same spec file"
            )

    def _model(self, model_config: ModelConfig, weights: dict[str, torch.Tensor]) -> CTRModel:
        model = build_model(self.spec, model_config)
        model.load_state_dict(weights, strict=True)
        return model

    # ---- privacy -------------------------------------------------------
    def plan_release(self, state: PartnerState, num_examples: int) -> DPSGDRound:
        """The DP-SGD release this round will make, calibrated to the partner's budget.

        Noise is calibrated so that all ``planned_rounds`` rounds fit the budget; when
        some are already spent, for the rounds that remain given what was spent.
        """
        p, t = self.config.privacy, self.config.training
        rate, steps = poisson_schedule(
            num_examples=num_examples, batch_size=t.batch_size, local_epochs=t.local_epochs
        )
        remaining = p.planned_rounds - len(state.rounds)
        if remaining <= 0:
            raise BudgetExceededError(
                f"partner '{self.config.partner_id}' has joined all {p.planned_rounds} planned "
                f"rounds (epsilon spent {state.accountant.epsilon(p.delta):.3f} of {p.epsilon}); "
                "the node refuses further rounds"
            )
        sigma = calibrate_noise_multiplier(
            budget=p.budget,
            sample_rate=rate,
            total_steps=steps * remaining,
            accountant=p.accountant,
            spent=state.accountant.history,
        )
        return DPSGDRound(
            noise_multiplier=sigma, sample_rate=rate, steps=steps, max_grad_norm=p.max_grad_norm
        )

    # ---- rounds --------------------------------------------------------
    def train(
        self,
        weights: dict[str, torch.Tensor],
        *,
        model_config: ModelConfig,
        spec_hash: str,
        run_id: str,
        server_round: int,
        proximal_mu: float = 0.0,
        seed: int | None = None,
    ) -> tuple[dict[str, torch.Tensor], TrainReport]:
        """One local round; raises BudgetExceededError (refusal) or a data error."""
        self.check_spec(spec_hash)
        p = self.config.privacy
        train_data, _ = self.splits()
        state = load_state(self.config.state_dir, kind=p.accountant)
        release = None
        if p.enabled:
            release = self.plan_release(state, len(train_data))
            state.accountant.check(release, p.budget)

        model = self._model(model_config, weights)
        base_hash = state_dict_sha256(weights)
        generator = torch.Generator().manual_seed(
            seed if seed is not None else secrets.randbits(63)
        )
        result = train_locally(
            model,
            train_data,
            training=self.config.training,
            release=release,
            accountant=p.accountant,
            dp_implementation=p.dp_implementation,
            generator=generator,
            proximal_mu=proximal_mu,
        )
        if release is not None and result.engine is not None:
            state.accountant.record_opacus_steps(release, result.engine.accountant)
        state.rounds.append((run_id, server_round))
        save_state(self.config.state_dir, state)

        new_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        report = TrainReport(
            partner_id=self.config.partner_id,
            num_examples=len(train_data),
            train_loss=result.mean_loss,
            epsilon=state.accountant.epsilon(p.delta) if p.enabled else float("inf"),
            delta=p.delta if p.enabled else 0.0,
            release=None if release is None else replace(release, steps=result.steps),
            accountant=p.accountant,
            dp_implementation=result.dp_implementation,
            base_model_hash=base_hash,
            update_hash=state_dict_sha256(new_weights),
            rows_skipped=train_data.report.rows_skipped if train_data.report else 0,
        )
        entry = self._release_log.record(
            report,
            run_id=run_id,
            server_round=server_round,
            budget=p.budget if p.enabled else None,
        )
        if entry is not None:
            report = replace(report, ledger_entry=entry.to_json())
        logger.info(
            "partner %s round %d: %d examples, loss %.4f, epsilon %.3f / %.3f",
            report.partner_id,
            server_round,
            report.num_examples,
            report.train_loss,
            report.epsilon,
            p.epsilon,
        )
        return new_weights, report

    def evaluate(
        self, weights: dict[str, torch.Tensor], *, model_config: ModelConfig, spec_hash: str
    ) -> EvalReport:
        """AUC and log loss of the global model on the partner's holdout."""
        self.check_spec(spec_hash)
        _, holdout = self.splits()
        if len(holdout) == 0:
            raise PartnerError(f"partner '{self.config.partner_id}' has no holdout rows")
        model = self._model(model_config, weights)
        x_cat, x_num, x_dense, y = holdout.tensors()
        probs = predict_proba(model, x_cat, x_num, x_dense)
        return EvalReport(
            self.config.partner_id,
            len(holdout),
            roc_auc(y.numpy(), probs),
            log_loss(y.numpy(), probs),
            float(probs.mean()),
        )


__all__ = ["EvalReport", "PartnerNode", "TrainReport"]
