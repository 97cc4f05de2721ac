"""The partner node: one round of local DP training, under its own budget.

Order of a training round, chosen so a crash can never under-count spending and
two messages can never share one spend: take the spend lock -> load the state,
settle a round the node stopped in (counted, marked ``partner-withheld``) and
reconcile with the partner's own verified ledger -> if this round was released
already, re-send that release and stop -> plan the release -> check it against the
partner's budget (refuse if over) -> mark the round pending (fsync) -> train ->
record what Opacus' accountant saw -> persist state (fsync) -> keep the update in
the outbox -> write the signed ledger entry -> clear the pending mark -> only then
hand the update to Flower.

What leaves the node is a :class:`fedctr.privacy.wire.TrainReply` and the weights; the
loss, row counts and the local evaluation stay in the partner's own log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from fedctr.clients.config import PartnerConfig
from fedctr.clients.errors import (
    PartnerConfigError,
    PartnerError,
    RoundAlreadyReleasedError,
    UnusableWeightsError,
)
from fedctr.clients.holdout import holdout_key
from fedctr.clients.outbox import Outbox
from fedctr.clients.release_log import ReleaseLog
from fedctr.clients.state import (
    PartnerState,
    PendingRound,
    load_state,
    reconcile,
    save_state,
    spend_session,
)
from fedctr.clients.trainer import train_locally
from fedctr.models import (
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
from fedctr.models.logs.cache import encoded_splits
from fedctr.models.logs.reader import EncodedData, UserKeyCollision, read_partner_log
from fedctr.privacy import (
    BudgetExceededError,
    DPSGDRound,
    SecureRandom,
    calibrate_noise_multiplier,
    poisson_schedule,
)
from fedctr.privacy.budget import BucketSelection, DistributedNoise, split_noise_multiplier
from fedctr.privacy.distributed import SkellamRound, sensitivities
from fedctr.privacy.distributed import calibrate as calibrate_distributed
from fedctr.privacy.distributed.mechanism import skellam_of
from fedctr.privacy.ledger import Entry, PartnerRelease, PartnerWithheld
from fedctr.privacy.ledger.bodies import mechanism_dict, parse_mechanism
from fedctr.privacy.secagg.release import Sealer
from fedctr.privacy.unit import UnitOfPrivacy
from fedctr.privacy.wire import TrainReply

logger = logging.getLogger(__name__)

ROUND_TIMES_FILE = "round-times.jsonl"  # in the state dir: the node's own timing, never sent
EVAL_BATCH_ROWS = 1 << 16  # holdout rows scored at a time
ENCODED_CACHE_DIR = "encoded"  # in the state dir: the encoded log (data_cache), never sent


@dataclass(frozen=True)
class LocalRound:
    """What a round did, for the partner's own log only (never sent)."""

    num_examples: int
    train_loss: float
    epsilon: float
    rows_skipped: int


@dataclass(frozen=True)
class EvalReport:
    """Local evaluation of the global model on the partner's own holdout (never sent)."""

    partner_id: str
    num_examples: int
    auc: float
    logloss: float
    mean_prediction: float


class PartnerNode:
    """A partner's node: owns its config, data, spend state and ledger."""

    def __init__(self, config: PartnerConfig) -> None:
        self.config = config
        self.spec: FeatureSpec = load_spec(config.spec)
        if (
            config.privacy.enabled
            and config.privacy.unit_of_privacy.is_user
            and not (self.spec.user_key)
        ):
            raise PartnerConfigError(
                f"partner '{config.partner_id}': [privacy] unit = 'user' needs the feature spec "
                f"({config.spec}) to name the columns that identify a person: add "
                'user_key = ["..."] to it'
            )
        self._splits: tuple[EncodedData, EncodedData] | None = None
        self._release_log = ReleaseLog(
            path=config.ledger, signing_key=config.signing_key, owner=config.partner_id
        )
        self._outbox = Outbox(config.state_dir)

    # ---- data ----------------------------------------------------------
    def splits(self) -> tuple[EncodedData, EncodedData]:
        """(train, holdout) of the partner's log; read once per process."""
        if self._splits is None:
            c = self.config
            users = c.privacy.unit_of_privacy.is_user
            key = holdout_key(c.state_dir)
            fraction = c.training.holdout_fraction
            if c.cache_on_disk():
                try:
                    self._splits = encoded_splits(
                        c.data,
                        self.spec,
                        c.state_dir / ENCODED_CACHE_DIR,
                        holdout_fraction=fraction,
                        holdout_key=key,
                        policy=c.bad_rows,
                        users=users,
                    )
                except UserKeyCollision:
                    logger.warning(
                        "partner %s: two user keys share an id across blocks of %s; reading "
                        "the log whole, where exact ids are used",
                        c.partner_id,
                        c.data,
                    )
            if self._splits is None:
                data = read_partner_log(c.data, self.spec, policy=c.bad_rows, users=users)
                self._splits = data.split(fraction, key=key)
            report = self._splits[0].report
            assert report is not None
            logger.info("partner %s: %s", c.partner_id, report.summary())
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
    def load_state(self) -> PartnerState:
        """The spend state, reconciled with the partner's own verified ledger (DP only)."""
        p = self.config.privacy
        state = load_state(self.config.state_dir, kind=p.accountant)
        if not p.enabled:
            return state
        if state.pending is not None:
            state = self._settle_interrupted(state)
        releases = self._release_log.releases()
        unit = p.unit_of_privacy.kind.value
        other = sorted({r.unit_of_privacy for r in releases} - {unit})
        if other:
            raise PartnerConfigError(
                f"partner '{self.config.partner_id}': its ledger ({self.config.ledger}) holds "
                f"{other[0]}-level releases, and [privacy] unit = '{unit}'. One budget covers "
                "one unit for the whole participation (an example-level spend says nothing "
                "exact about users, and the reverse); keep the unit, or start a new "
                "participation with a fresh state_dir and ledger."
            )
        return reconcile(state, releases, source=self.config.state_dir)

    def _settle_interrupted(self, state: PartnerState) -> PartnerState:
        """The node stopped during a round: count its spend and mark it in the ledger.

        If the round's release entry was written, the update left (or can be re-sent
        from the outbox) and only the marker is cleared. Otherwise the round is spent
        but withheld: the accountant counts it (all approved steps if the node stopped
        while training), a ``partner-withheld`` entry records it, and only then is the
        marker cleared, so a crash here repeats this step instead of losing the spend.
        """
        p = self.config.privacy
        pending = state.pending
        assert pending is not None
        key = (pending.run_id, pending.round)
        ledgered = {(r.run_id, r.round): r for r in self._release_log.releases()}
        earlier = ledgered.get(key)
        if earlier is None:
            mechanism = parse_mechanism(pending.mechanism)
            if key in state.rounds:  # trained and counted: the mark holds the steps taken
                reason = "stopped-before-release"
            else:
                reason = "stopped-while-training"
                state.accountant.record_interrupted(mechanism)
                state.rounds.append(key)
            self._release_log.record(
                PartnerWithheld(
                    run_id=pending.run_id,
                    round=pending.round,
                    partner_id=self.config.partner_id,
                    mechanism=mechanism,
                    accountant=p.accountant,
                    dp_implementation=p.dp_implementation,
                    unit_of_privacy=p.unit_of_privacy.kind.value,
                    max_rows_per_unit=p.unit_of_privacy.max_rows,
                    epsilon_after=state.accountant.epsilon(p.delta),
                    delta=p.delta,
                    budget=p.budget,
                    reason=reason,
                )
            )
            logger.warning(
                "partner %s: the node stopped in round %d of run %s (%s); its noise was "
                "drawn, so the round counts as spent (epsilon now %.3f) and is marked "
                "withheld in the ledger",
                self.config.partner_id,
                pending.round,
                pending.run_id,
                reason,
                state.accountant.epsilon(p.delta),
            )
        elif not earlier.released and key not in state.rounds:
            state.accountant.record_interrupted(earlier.mechanism)  # marked, state not saved
            state.rounds.append(key)
        state.pending = None
        save_state(self.config.state_dir, state)
        return state

    def _resend(
        self, run_id: str, server_round: int, base_hash: str, seal: Sealer | None = None
    ) -> tuple[dict[str, torch.Tensor], TrainReply] | None:
        """The release already made for this round, re-sent; ``None`` if there is none.

        A round is trained at most once: asked again from the same global model (the
        platform resumed, a reply was lost), the node re-sends the same update and the
        same signed entry, spending nothing. Asked from another model, it refuses.
        """
        found = self._release_log.find_release(run_id, server_round)
        if found is None:
            return None
        entry, body = found
        if body.base_model_hash != base_hash:
            raise RoundAlreadyReleasedError(
                f"partner '{self.config.partner_id}' already released round {server_round} of "
                f"run {run_id} (from global model {body.base_model_hash[:12]}); asked again "
                f"from model {base_hash[:12]}, it will not train the round twice"
            )
        session = seal.session_id if seal is not None else ""
        if body.secagg_session != session:
            # The same update under two sets of masks would let the platform subtract two
            # unmasked sums over different survivors and isolate it: never re-masked.
            raise RoundAlreadyReleasedError(
                f"partner '{self.config.partner_id}' already released round {server_round} of "
                f"run {run_id} "
                + (
                    f"masked for secure-aggregation session {body.secagg_session[:8]}"
                    if body.secagg_session
                    else "without secure aggregation"
                )
                + "; it is not sent again under another session"
            )
        weights = self._outbox.get(body.update_hash)
        logger.info(
            "partner %s: round %d of run %s was released before; re-sending that update "
            "(no new training, no new spend)",
            self.config.partner_id,
            server_round,
            run_id,
        )
        return weights, self._reply(body, entry)

    def plan_release(self, state: PartnerState, num_examples: int) -> DPSGDRound:
        """The DP-SGD release this round will make, calibrated to the partner's budget.

        Sample rate and steps come from the config alone (declared), so the noise
        multiplier and the epsilon reported with the update are data-independent.
        Noise is calibrated so that all ``planned_rounds`` rounds fit the budget; when
        some are already spent, for the rounds that remain given what was spent.
        ``num_examples`` (rows, or users under user-level DP) only feeds the local
        delta < 1/n check, never the release.
        """
        p, t = self.config.privacy, self.config.training
        remaining = self._rounds_left(state, num_examples)
        steps = poisson_schedule(sample_rate=p.sample_rate, local_epochs=t.local_epochs)
        sigma = calibrate_noise_multiplier(
            budget=p.budget,
            sample_rate=p.sample_rate,
            total_steps=steps * remaining,
            accountant=p.accountant,
            spent=state.accountant.history,
        )
        selection = None
        if p.bucket_selection:  # the two noises together are what was calibrated
            sigma, sigma_select = split_noise_multiplier(sigma, p.selection_noise_ratio)
            selection = BucketSelection(
                noise_multiplier=sigma_select, threshold=p.selection_threshold * sigma_select
            )
        return DPSGDRound(
            noise_multiplier=sigma,
            sample_rate=p.sample_rate,
            steps=steps,
            max_grad_norm=p.max_grad_norm,
            selection=selection,
        )

    def _rounds_left(self, state: PartnerState, num_examples: int) -> int:
        """Planned rounds not yet joined; refuses a delta >= 1/n or a finished plan."""
        p = self.config.privacy
        if p.delta * num_examples >= 1:
            unit = "users" if p.unit_of_privacy.is_user else "training rows"
            raise PartnerConfigError(
                f"partner '{self.config.partner_id}': delta={p.delta:g} is not below 1/n for "
                f"its {num_examples} {unit}; such a delta permits releasing a whole "
                "unit's data. Lower [privacy] delta."
            )
        remaining = p.planned_rounds - len(state.rounds)
        if remaining <= 0:
            raise BudgetExceededError(
                f"partner '{self.config.partner_id}' has joined all {p.planned_rounds} planned "
                f"rounds (epsilon spent {state.accountant.epsilon(p.delta):.3f} of {p.epsilon}); "
                "the node refuses further rounds"
            )
        return remaining

    def plan_distributed_release(
        self,
        state: PartnerState,
        num_examples: int,
        *,
        seal: Sealer | None,
        base: dict[str, torch.Tensor],
    ) -> DPSGDRound:
        """The distributed release of this round: one clipped gradient step whose Skellam
        noise share is calibrated so that a sum of ``min_noise_shares`` inputs fits the
        budget over the planned rounds (against the platform and the public).

        Everything it depends on is declared: the sample rate, clipping norm, learning
        rate and batch size of the partner's config, SecAgg's integer grid and the
        model's size (both sent by the platform).
        """
        p, t = self.config.privacy, self.config.training
        if seal is None:
            raise PartnerConfigError(
                f"partner '{self.config.partner_id}' adds only a share of its noise "
                "([privacy] noise = 'distributed'); a round without secure aggregation would "
                "release its update under-noised, so the node refuses it"
            )
        if seal.weight != 1:
            raise PartnerConfigError(
                "under distributed noise the aggregation weight must be 1 (a weight scales "
                "the sensitivity the shared noise is calibrated for)"
            )
        remaining = self._rounds_left(state, num_examples)
        settings = seal.session.settings
        unit_norm = settings.scale * t.learning_rate * p.max_grad_norm / t.batch_size
        dimension = sum(v.numel() for v in base.values() if v.is_floating_point())
        l2, l1 = sensitivities(unit_norm=unit_norm, dimension=dimension)
        template = SkellamRound(
            noise_multiplier=1.0,
            min_shares=p.min_noise_shares,
            sample_rate=p.sample_rate,
            max_grad_norm=p.max_grad_norm,
            l2_sensitivity=l2,
            l1_sensitivity=l1,
        )
        tuned = calibrate_distributed(
            budget=p.budget, rounds=remaining, template=template, spent=state.accountant.distributed
        )
        return DPSGDRound(
            noise_multiplier=tuned.noise_multiplier,
            sample_rate=p.sample_rate,
            steps=1,
            max_grad_norm=p.max_grad_norm,
            distributed=DistributedNoise(
                min_shares=p.min_noise_shares, l2_sensitivity=l2, l1_sensitivity=l1
            ),
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
        seal: Sealer | None = None,
    ) -> tuple[dict[str, torch.Tensor], TrainReply | None]:
        """One local round; raises BudgetExceededError (refusal) or a data error.

        Returns the new weights and, for a DP partner, the typed reply (``None`` for a
        non-private baseline partner, which has nothing the contract could declare).
        ``seed`` makes noise and sampling reproducible (benchmarks only). With ``seal``
        (secure aggregation) what is returned, kept and ledgered is the masked input.
        """
        started = time.perf_counter()
        if seal is not None and seed is not None and seal.rng is None:
            seal.rng = SecureRandom.from_key(_seed_key(seed, purpose="secagg-rounding"))
        self.check_spec(spec_hash)
        _check_finite(weights)
        p = self.config.privacy
        if p.enabled:
            self._release_log.require()
        elif seal is not None:
            raise PartnerConfigError(
                f"partner '{self.config.partner_id}' has DP off; secure aggregation sums DP "
                "updates only"
            )
        train_data, holdout = self.splits()
        self._log_evaluation(weights, model_config, holdout, server_round)
        base_hash = state_dict_sha256(weights)
        model = self._model(model_config, weights)
        with spend_session(self.config.state_dir):
            state = self.load_state()
            if p.enabled:
                resent = self._resend(run_id, server_round, base_hash, seal)
                if resent is not None:
                    return resent
            release = None
            if p.enabled and p.noise == "distributed":
                release = self.plan_distributed_release(
                    state, _units(train_data, p.unit_of_privacy), seal=seal, base=weights
                )
                state.accountant.check(release, p.budget)
                shared = skellam_of(release)
                assert seal is not None and shared is not None
                seal.noise_mu_share = shared.mu_share  # this partner's share of the noise
                seal.session.min_active = p.min_noise_shares
            elif p.enabled:
                release = self.plan_release(state, _units(train_data, p.unit_of_privacy))
                state.accountant.check(release, p.budget)
                # Reserved before any noise is drawn: a node stopped from here on finds
                # the round on restart and counts it as spent (partner-withheld).
                state.pending = PendingRound(run_id, server_round, mechanism_dict(release))
                save_state(self.config.state_dir, state)
            result = train_locally(
                model,
                train_data,
                training=self.config.training,
                release=release,
                accountant=p.accountant,
                dp_implementation=p.dp_implementation,
                rng=None if seed is None else SecureRandom.from_key(_seed_key(seed)),
                generator=torch.Generator().manual_seed(
                    self.config.training.seed if seed is None else seed
                ),
                proximal_mu=proximal_mu,
                unit=p.unit_of_privacy if p.enabled else None,
            )
            if release is not None and release.distributed is not None:
                state.accountant.record_distributed(release)  # its share is drawn below
            elif release is not None and result.engine is not None:
                state.accountant.record_opacus_steps(release, result.engine.accountant)
            if release is not None:  # the pending mark now holds the steps taken
                taken = mechanism_dict(replace(release, steps=result.steps))
                state.pending = PendingRound(run_id, server_round, taken)
            state.rounds.append((run_id, server_round))
            save_state(self.config.state_dir, state)
            new_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            epsilon = state.accountant.epsilon(p.delta) if p.enabled else float("inf")
            reply = None
            if release is not None:
                if seal is not None:
                    new_weights = seal(weights, new_weights)
                update_hash = self._outbox.keep(new_weights)  # before the entry names it
                reply = self._ledger_release(
                    replace(release, steps=result.steps),
                    dp_implementation=result.dp_implementation or "unknown",
                    epsilon=epsilon,
                    base_hash=base_hash,
                    update_hash=update_hash,
                    run_id=run_id,
                    server_round=server_round,
                    secagg_session=seal.session_id if seal is not None else "",
                )
                state.pending = None
                save_state(self.config.state_dir, state)
        self._record_time(run_id, server_round, time.perf_counter() - started)
        local = LocalRound(
            num_examples=len(train_data),
            train_loss=result.mean_loss,
            epsilon=epsilon,
            rows_skipped=train_data.report.rows_skipped if train_data.report else 0,
        )
        logger.info(
            "partner %s round %d (local only, not sent): %d examples, %d bad rows skipped, "
            "loss %.4f, epsilon %.3f / %.3f",
            self.config.partner_id,
            server_round,
            local.num_examples,
            local.rows_skipped,
            local.train_loss,
            local.epsilon,
            p.epsilon,
        )
        return new_weights, reply

    def _ledger_release(
        self,
        release: DPSGDRound,
        *,
        dp_implementation: str,
        epsilon: float,
        base_hash: str,
        update_hash: str,
        run_id: str,
        server_round: int,
        secagg_session: str = "",
    ) -> TrainReply:
        """Sign and fsync the release's ledger entry; the reply carries exactly that."""
        p = self.config.privacy
        body = PartnerRelease(
            run_id=run_id,
            round=server_round,
            partner_id=self.config.partner_id,
            base_model_hash=base_hash,
            update_hash=update_hash,
            mechanism=release,
            accountant=p.accountant,
            dp_implementation=dp_implementation,
            unit_of_privacy=p.unit_of_privacy.kind.value,
            max_rows_per_unit=p.unit_of_privacy.max_rows,
            epsilon_after=epsilon,
            delta=p.delta,
            budget=p.budget,
            secure_aggregation="secagg+" if secagg_session else "none",
            secagg_session=secagg_session,
        )
        entry = self._release_log.record(body)
        return self._reply(body, entry)

    def _reply(self, body: PartnerRelease, entry: Entry) -> TrainReply:
        """The reply for a ledgered release: exactly what its signed entry says."""
        return TrainReply(
            partner_id=body.partner_id,
            release=body.mechanism,
            accountant=body.accountant,
            dp_implementation=body.dp_implementation,
            epsilon=body.epsilon_after,
            delta=body.delta,
            budget=body.budget,
            aggregation_weight=self.config.training.aggregation_weight,
            base_model_hash=body.base_model_hash,
            update_hash=body.update_hash,
            ledger_entry=entry.to_json(),
            unit=body.unit,
            secure_aggregation=body.secure_aggregation,
            secagg_session=body.secagg_session,
        )

    def _record_time(self, run_id: str, server_round: int, seconds: float) -> None:
        """Append this round's compute time to the node's local timing file."""
        row = {"run_id": run_id, "round": server_round, "seconds": round(seconds, 4)}
        with (self.config.state_dir / ROUND_TIMES_FILE).open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    def _log_evaluation(
        self,
        weights: dict[str, torch.Tensor],
        model_config: ModelConfig,
        holdout: EncodedData,
        server_round: int,
    ) -> None:
        """The received model on the local holdout, in the partner's own log only."""
        if server_round <= 1 or len(holdout) == 0:
            return
        try:
            report = self.evaluate(
                weights, model_config=model_config, spec_hash=self.spec.spec_hash
            )
        except (PartnerError, RuntimeError, ValueError) as exc:
            logger.warning("local evaluation skipped: %s", exc)
            return
        logger.info(
            "partner %s: global model before round %d on the local holdout (not sent): "
            "AUC %.4f, log loss %.4f over %d rows",
            report.partner_id,
            server_round,
            report.auc,
            report.logloss,
            report.num_examples,
        )

    def evaluate(
        self, weights: dict[str, torch.Tensor], *, model_config: ModelConfig, spec_hash: str
    ) -> EvalReport:
        """AUC and log loss of the global model on the partner's holdout (local use only)."""
        self.check_spec(spec_hash)
        _, holdout = self.splits()
        if len(holdout) == 0:
            raise PartnerError(f"partner '{self.config.partner_id}' has no holdout rows")
        model = self._model(model_config, weights)
        # a batch at a time: a holdout in the on-disk cache is never read whole
        parts = [
            (y.numpy(), predict_proba(model, x_cat, x_num, x_dense))
            for x_cat, x_num, x_dense, y in holdout.batches(EVAL_BATCH_ROWS)
        ]
        y = np.concatenate([labels for labels, _ in parts])
        probs = np.concatenate([p for _, p in parts])
        return EvalReport(
            self.config.partner_id,
            len(holdout),
            roc_auc(y, probs),
            log_loss(y, probs),
            float(probs.mean()),
        )


def _check_finite(weights: dict[str, torch.Tensor]) -> None:
    """Refuse inf/NaN weights: trained from, they would turn exactly the rows the batch
    touched into NaN, and the update would show which those were."""
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise UnusableWeightsError(
            f"the platform sent non-finite values in {bad[:3]}; refusing to train from them"
        )


def _units(data: EncodedData, unit: UnitOfPrivacy) -> int:
    """How many units (rows, or distinct users) the partner's training data holds:
    for the local delta check only, never sent."""
    if unit.is_user and data.users is not None:
        return len(np.unique(data.users))
    return len(data)


def _seed_key(seed: int, *, purpose: str = "") -> bytes:
    """A 32-byte ChaCha20 key from a benchmark seed (reproducible, not secret); each
    ``purpose`` gets its own stream."""
    label = f"fedctr-bench-seed:{seed}" + (f":{purpose}" if purpose else "")
    return hashlib.sha256(label.encode()).digest()


__all__ = ["ROUND_TIMES_FILE", "EvalReport", "LocalRound", "PartnerNode"]
