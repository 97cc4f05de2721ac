"""One federated training run on the platform: strategy, rounds, evaluation, checkpoints,
and resuming a run after a crash.

Called by the ServerApp with a Flower ``Grid``; the same code runs under the
simulation engine and a real SuperLink. Publishing is a separate step
(:mod:`fedctr.server.platform.publishing`) so a run's outcome can be inspected before it is signed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedctr.durable import replace_file
from fedctr.models import CTRModel, FeatureSpec, ModelConfig, build_model, state_dict_sha256
from fedctr.models.logs.reader import BadRowPolicy, EncodedData, read_partner_log
from fedctr.privacy import wire as P
from fedctr.privacy.secagg import SecAggSettings
from fedctr.privacy.wire import TrainReply
from fedctr.server.platform.checkpoint import save_checkpoint
from fedctr.server.platform.errors import PlatformConfigError, ResumeError
from fedctr.server.platform.evaluation import GlobalMetrics, evaluate_global
from fedctr.server.platform.faults import FaultPlan, FaultStage
from fedctr.server.platform.journal import UpdateJournal
from fedctr.server.platform.ledger import PlatformLedger
from fedctr.server.platform.rounds import Failure, RoundLog, read_round_log
from fedctr.server.platform.run_state import (
    RUN_STATE_FILE,
    RunState,
    load_checkpoint,
    plan_hash,
    restore_strategy_state,
    save_strategy_state,
    strategy_state_path,
)
from fedctr.server.platform.strategies.accountable import AccountableStrategy
from fedctr.server.platform.strategies.registry import StrategyConfig, build_strategy
from fedctr.server.platform.strategies.round_timing import TIMING_FILE, RoundTimer
from fedctr.server.platform.strategies.running_mean import FOLDABLE
from fedctr.server.platform.strategies.secagg import SUMMABLE, SecAggPlus

logger = logging.getLogger(__name__)

JOURNAL_DIR = "journal"


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
    secure_aggregation: SecAggSettings | None = None


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
    resume: bool = False,
    faults: FaultPlan | None = None,
) -> FederationOutcome:
    """Run ``plan.rounds`` rounds on ``grid``; journal, checkpoint, evaluate and ledger each.

    The ledger is required: every update is checked against its signed entry and a
    registered partner key before it is aggregated (fail closed).
    ``wrap_aggregation`` wraps the Flower strategy *inside* the accountable layer, after
    replies are checked and recorded (an audit run's canary clients; never a release).
    ``resume`` continues the run from its last committed round (:mod:`.run_state`):
    finished rounds are rebuilt from the journal, an interrupted round is completed
    from the replies journaled before the crash. ``faults`` stops the run at a named
    stage (fault-injection tests only).
    """
    started = time.monotonic()
    work = plan.work_dir
    model = initial_model(plan)
    round_log = RoundLog(work / "rounds.jsonl")
    journal = UpdateJournal(work / JOURNAL_DIR)
    eval_data = _platform_eval_data(plan)
    outcome = FederationOutcome(plan=plan, model=model, round_log=round_log)
    aggregation = build_strategy(plan.strategy)
    if wrap_aggregation is not None:
        aggregation = wrap_aggregation(aggregation)
    secagg = _secure_aggregation(plan, aggregation, round_log, wrapped=wrap_aggregation)
    if secagg is not None:
        aggregation = secagg

    def check_reply(rnd: int, reply: TrainReply) -> str | None:
        problem = ledger.entry_problem(run_id=plan.run_id, server_round=rnd, reply=reply)
        if problem is not None:
            return problem
        if secagg is not None:
            return secagg.reply_problem(rnd, reply)
        if reply.secure_aggregation != "none":
            return "a masked update outside a secure-aggregation round"
        return None

    accountable = AccountableStrategy(
        aggregation,
        round_log,
        min_partners=plan.strategy.min_partners,
        check_reply=check_reply,
        # a running weighted sum where the aggregate is one; SecAgg sums its own masked
        # inputs and an audit's canary wrapper needs every update's norm
        fold=plan.strategy.name in FOLDABLE and secagg is None and wrap_aggregation is None,
    )
    strategy: Strategy = RoundTimer(accountable, work / TIMING_FILE)
    fingerprint = plan_hash(
        run_id=plan.run_id,
        rounds=plan.rounds,
        spec_hash=plan.spec.spec_hash,
        model=plan.model.to_dict(),
        strategy=plan.strategy.options()
        | {"name": plan.strategy.name}
        | (
            {} if plan.secure_aggregation is None else {"secagg": plan.secure_aggregation.to_dict()}
        ),
        seed=plan.seed,
    )
    if resume:
        committed = _resume_state(plan, fingerprint)
        if committed.completed_round:
            model.load_state_dict(load_checkpoint(work, committed), strict=True)
            restore_strategy_state(strategy, strategy_state_path(work, committed.completed_round))
        _rebuild_rounds(round_log, accountable, journal, committed.completed_round, outcome)
        first = committed.completed_round + 1
        logger.info("run %s: resuming after round %d of %d", plan.run_id, first - 1, plan.rounds)
    else:
        if (work / RUN_STATE_FILE).exists():
            raise ResumeError(
                f"run {plan.run_id} already has state in {work}; resume it (--resume) or "
                "start a run with a new id (its journaled updates are kept)"
            )
        work.mkdir(parents=True, exist_ok=True)
        (work / "rounds.jsonl").unlink(missing_ok=True)
        (work / TIMING_FILE).unlink(missing_ok=True)
        RunState(plan.run_id, fingerprint, 0, None).save(work)
        first = 1
    config = ConfigRecord(
        {
            P.RUN_ID: plan.run_id,
            P.SPEC_HASH: plan.spec.spec_hash,
            P.MODEL_CONFIG: json.dumps(plan.model.to_dict()),
            P.PROXIMAL_MU: float(plan.strategy.proximal_mu),
        }
    )
    arrays = ArrayRecord(model.state_dict())
    faults = faults or FaultPlan()
    strategy.summary()
    for server_round in range(first, plan.rounds + 1):
        logger.info("[ROUND %d/%d]", server_round, plan.rounds)
        arrays = _train_round(
            server_round,
            arrays,
            grid=grid,
            strategy=strategy,
            config=config,
            journal=journal,
            plan=plan,
            faults=faults,
            accountable=accountable,
        )
        state = arrays.to_torch_state_dict()
        # Commit: checkpoint, evaluation, ledger, round log, then the run state last.
        save_checkpoint(work / "checkpoints", server_round, state)
        record = round_log.round(server_round)
        if eval_data is not None:
            model.load_state_dict(state, strict=True)
            metrics = evaluate_global(model, eval_data)
            outcome.global_metrics[server_round] = metrics
            record.global_metrics = metrics.as_dict()
        ledger.record_round(record)
        round_log.flush(server_round)
        save_strategy_state(strategy, strategy_state_path(work, server_round))
        RunState(plan.run_id, fingerprint, server_round, state_dict_sha256(state)).save(work)
        faults.hit(FaultStage.AFTER_COMMIT, server_round)
    model.load_state_dict(arrays.to_torch_state_dict(), strict=True)
    outcome.seconds = time.monotonic() - started
    return outcome


def _train_round(
    server_round: int,
    arrays: ArrayRecord,
    *,
    grid: Grid,
    strategy: Strategy,
    config: ConfigRecord,
    journal: UpdateJournal,
    plan: FederationPlan,
    faults: FaultPlan,
    accountable: AccountableStrategy,
) -> ArrayRecord:
    """One training round; returns the new global arrays (the old ones if not aggregated).

    Replies are journaled before they are aggregated. Replies journaled by a crashed
    attempt at this round are used as they are: if they already reach ``min_partners``
    nobody is asked again; otherwise only nodes without a journaled reply are asked
    (a partner asked again for a round it released re-sends that release, see
    :mod:`fedctr.clients.outbox`, and the strategy counts one update per partner).
    """
    stored = journal.messages(server_round)
    if stored and plan.secure_aggregation is not None:
        # Masked inputs of a crashed attempt belong to a session whose routing died with
        # the platform: they cannot be unmasked. They are recorded as received and not
        # aggregated (so the platform ledger reports every release), and the round runs
        # again in a new session; partners that released under the old one refuse to
        # re-mask (see README).
        logger.warning(
            "round %d: %d masked input(s) from the interrupted session cannot be unmasked; "
            "the round starts a new secure-aggregation session",
            server_round,
            len(stored),
        )
        record = accountable.round_log.round(server_round)
        for msg in stored:
            checked, _ = accountable.check(server_round, msg)
            if checked is not None and checked.reply is not None:
                record.rejected.append(checked)
                record.failures.append(Failure(checked.node_id, "secagg", "session-lost-in-crash"))
        stored = []
    messages = list(strategy.configure_train(server_round, arrays, config, grid))
    if len(stored) >= plan.strategy.min_partners:
        messages = []
        logger.info(
            "round %d: completed from %d journaled update(s), nobody asked to train again",
            server_round,
            len(stored),
        )
    elif stored:
        done = {m.metadata.src_node_id for m in stored}
        messages = [m for m in messages if m.metadata.dst_node_id not in done]
    faults.hit(FaultStage.BEFORE_SEND, server_round)

    def arrivals() -> Iterator[Message]:
        """Journaled replies, then each new reply once it is durable in the journal: the
        strategy checks (and a folding one sums) replies one at a time as they come."""
        yield from stored
        for msg in _as_they_arrive(grid, messages, timeout=plan.timeout_s):
            journal.record(server_round, [msg])
            yield msg
        faults.hit(FaultStage.AFTER_REPLIES, server_round)

    new_arrays, _ = strategy.aggregate_train(server_round, arrivals())
    arrays = arrays if new_arrays is None else new_arrays
    # Flower's evaluate leg, as Strategy.start runs it (fedctr sends no evaluate messages;
    # the round timer closes the round's timing row here).
    evaluate = list(strategy.configure_evaluate(server_round, arrays, ConfigRecord(), grid))
    answers = list(grid.send_and_receive(evaluate, timeout=plan.timeout_s)) if evaluate else []
    strategy.aggregate_evaluate(server_round, answers)
    faults.hit(FaultStage.AFTER_AGGREGATION, server_round)
    return arrays


def _as_they_arrive(
    grid: Grid, messages: list[Message], *, timeout: float | None
) -> Iterator[Message]:
    """The replies to ``messages``, each as it is pulled (a grid with ``receive``, i.e.
    :class:`fedctr.federation.grid.ResponsiveGrid`), or all at once (any other grid)."""
    if not messages:
        return iter(())
    receive = getattr(grid, "receive", None)
    if receive is not None:
        return receive(messages, timeout=timeout)
    return iter(grid.send_and_receive(messages, timeout=timeout))


def _secure_aggregation(
    plan: FederationPlan,
    aggregation: Strategy,
    round_log: RoundLog,
    *,
    wrapped: Callable[[Strategy], Strategy] | None,
) -> SecAggPlus | None:
    """The SecAgg+ wrapper for this plan, or None; refused where sums are not enough."""
    settings = plan.secure_aggregation
    if settings is None:
        return None
    if plan.strategy.name not in SUMMABLE:
        raise PlatformConfigError(
            f"strategy '{plan.strategy.name}' needs each partner's update; under secure "
            f"aggregation the platform sees only their sum. Use one of {list(SUMMABLE)}."
        )
    if wrapped is not None:
        raise PlatformConfigError(
            "an audit run that injects updates into the aggregation cannot run under secure "
            "aggregation; run it without [secure_aggregation]"
        )
    return SecAggPlus(aggregation, settings, round_log=round_log, timeout_s=plan.timeout_s)


def _resume_state(plan: FederationPlan, fingerprint: str) -> RunState:
    state = RunState.load(plan.work_dir)
    if state.run_id != plan.run_id or state.plan_hash != fingerprint:
        raise ResumeError(
            f"run {state.run_id} in {plan.work_dir} was started with another plan (model, "
            "strategy, spec, rounds or seed differ); resume it with the platform config it "
            "started with"
        )
    return state


def _rebuild_rounds(
    round_log: RoundLog,
    accountable: AccountableStrategy,
    journal: UpdateJournal,
    completed: int,
    outcome: FederationOutcome,
) -> None:
    """The records of committed rounds, from their round-log lines and journaled replies.

    Each journaled reply is checked again (contract, weights hash, signed ledger entry),
    so a journal edited on disk is refused, not aggregated or carded. Lines of rounds
    that did not commit are dropped: those rounds run again.
    """
    rows = [r for r in read_round_log(round_log.path) if r["round"] <= completed]  # type: ignore[arg-type]
    if len(rows) != completed:
        raise ResumeError(
            f"{round_log.path}: {len(rows)} round line(s) for {completed} committed rounds"
        )
    for row in rows:
        record = round_log.round(row["round"])
        record.aggregated = bool(row["aggregated"])
        record.failures = [Failure(**f) for f in row["failures"]]
        record.global_metrics = dict(row["global_metrics"])
        if record.global_metrics:
            outcome.global_metrics[record.round] = GlobalMetrics.from_dict(record.global_metrics)
        train = {t["partner_id"] for t in row["train"]}
        rejected = {t["partner_id"] for t in row["rejected"]}
        for msg in journal.messages(record.round):
            checked, problem = accountable.check(record.round, msg)
            if checked is None:
                continue
            if problem is None and checked.partner_id in train:
                if checked.partner_id not in {t.partner_id for t in record.train}:
                    record.train.append(checked)
            elif checked.partner_id in rejected:
                record.rejected.append(checked)
        missing = train - {t.partner_id for t in record.train}
        if missing:
            raise ResumeError(
                f"round {record.round}: the journal lacks the accepted update(s) of "
                f"{sorted(missing)}; the run cannot be rebuilt from {journal.directory}"
            )
    assert round_log.path is not None
    replace_file(
        round_log.path,
        "".join(json.dumps(round_log.round(r["round"]).to_json()) + "\n" for r in rows).encode(),
    )


def _platform_eval_data(plan: FederationPlan) -> EncodedData | None:
    if plan.eval_data is None:
        return None
    return read_partner_log(plan.eval_data, plan.spec, policy=BadRowPolicy.SKIP)


__all__ = [
    "JOURNAL_DIR",
    "FederationOutcome",
    "FederationPlan",
    "initial_model",
    "run_federation",
]
