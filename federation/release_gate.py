"""The release gate: no model is published unless an empirical audit backs each claim.

The compliance audit recomputes every claimed epsilon from the recorded (sigma, q,
steps); it cannot tell whether the training code delivers it. Before publishing,
the platform takes every DP-SGD configuration its contributing partners declared
(model, DP-SGD implementation, accountant, and the per-round mechanisms: sigma, q,
steps, C) and runs it once through the partner node's real training path
(:func:`fedctr.clients.canary_audit.run.run_empirical_audit`) with canaries, on the
platform's *own* data: the one-run bound of Steinke, Nasr & Jagielski 2023.

Why on the platform's data: the audit checks the mechanism, which does not depend
on whose rows it trains on; and a result computed from platform-held rows and the
declared configuration involves no partner row, so it may go into the public card.
(A partner running the audit on its own log could not send the result: that would
be a release outside its budget.)

Each audit is appended to the platform's signed ledger, passed or not. If any lower
bound exceeds its claimed epsilon, :class:`ReleaseBlocked` is raised and nothing is
published; the auditor's report lists the refuted claim. Partners that declared the
same configuration share one audit.

This is wiring (federation layer) because it joins the partner node's code with
the platform's ledger; the bound is :mod:`fedctr.privacy.audit.one_run`, the pass
rule :attr:`fedctr.privacy.ledger.PlatformEmpiricalAudit.passed`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedctr.clients.canary_audit.run import EmpiricalAuditResult, run_empirical_audit
from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.errors import FedctrError
from fedctr.models import ModelConfig
from fedctr.models.logs.reader import BadRowPolicy, EncodedData, read_partner_log
from fedctr.privacy.budget import AccountantKind, DPSGDRound, PrivacyBudget
from fedctr.privacy.card import EmpiricalAuditStatement
from fedctr.privacy.ledger import PlatformEmpiricalAudit
from fedctr.privacy.ledger.bodies import ScoreHistogram
from fedctr.privacy.signing import sha256_file
from fedctr.privacy.unit import UnitOfPrivacy
from fedctr.privacy.wire import TrainReply
from fedctr.server.platform.ledger import PlatformLedger
from fedctr.server.platform.orchestrator import FederationOutcome
from fedctr.validate import Checker

logger = logging.getLogger(__name__)

HISTOGRAM_BINS = 24
GATE_PARTNER_ID = "release-gate"


class ReleaseBlocked(FedctrError):
    """An empirical audit refuted a claimed epsilon: the model is not published."""


class ReleaseGateError(FedctrError):
    """The release gate cannot run (no platform data, no DP contributions, ...)."""


@dataclass(frozen=True, kw_only=True)
class ReleaseGateSettings:
    """``[release_gate]`` of platform.toml: publishing needs a passing audit.

    ``data`` is a file the platform holds (default: its evaluation file); ``canaries``
    the number of canaries per audit (more tighten the bound: at m canaries it cannot
    exceed what m guesses can show, see ``max_epsilon_lower_bound``); ``seed`` draws
    canaries and their membership (noise and sampling come from the CSPRNG).
    """

    data: Path
    canaries: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class _Configuration:
    """What partners declared, round by round: the thing the gate audits."""

    model: str
    dp_implementation: str
    accountant: AccountantKind
    mechanisms: tuple[DPSGDRound, ...]
    budget: PrivacyBudget
    unit: UnitOfPrivacy


def _configuration(replies: list[TrainReply], model: ModelConfig) -> _Configuration:
    last = replies[-1]
    return _Configuration(
        model=model.name,
        dp_implementation=last.dp_implementation,
        accountant=last.accountant,
        mechanisms=tuple(r.release for r in replies),
        budget=last.budget,
        unit=last.unit,
    )


def declared_configurations(outcome: FederationOutcome) -> dict[_Configuration, tuple[str, ...]]:
    """Each distinct declared configuration -> the partners that trained with it.

    Raises :class:`ReleaseGateError` for a contribution without DP (there is no
    claim to audit, and fedctr does not publish such models anyway).
    """
    groups: dict[_Configuration, list[str]] = {}
    for partner, records in sorted(outcome.round_log.contributors().items()):
        replies = [r.reply for r in records]
        if any(reply is None for reply in replies):
            raise ReleaseGateError(f"partner '{partner}' contributed without DP: nothing to audit")
        key = _configuration([r for r in replies if r is not None], outcome.plan.model)
        groups.setdefault(key, []).append(partner)
    return {k: tuple(v) for k, v in groups.items()}


def _audit_partner(
    config: _Configuration, settings: ReleaseGateSettings, spec: Path, n: int
) -> PartnerConfig:
    """A throw-away partner config that trains the declared configuration on ``n`` rows."""
    first = config.mechanisms[0]
    privacy = PrivacySettings(
        epsilon=config.budget.epsilon,
        delta=config.budget.delta,
        planned_rounds=len(config.mechanisms),
        sample_rate=first.sample_rate,
        max_grad_norm=first.max_grad_norm,
        accountant=config.accountant,
        dp_implementation=config.dp_implementation,
        unit=config.unit.kind.value,
        **({"max_rows_per_user": config.unit.max_rows} if config.unit.is_user else {}),
    )
    # The declared expected batch size scales the update, not its privacy; q x n keeps
    # the optimizer in its usual regime on the platform's data.
    training = TrainingSettings(batch_size=max(1, round(first.sample_rate * n)))
    return PartnerConfig(
        partner_id=GATE_PARTNER_ID,
        data=settings.data,
        spec=spec,
        state_dir=settings.data.parent,  # replaced by the audit's own temporary directory
        bad_rows=BadRowPolicy.SKIP,
        privacy=privacy,
        training=training,
    )


def score_histogram(result: EmpiricalAuditResult, bins: int = HISTOGRAM_BINS) -> ScoreHistogram:
    """The canary scores in ``bins`` equal bins: included vs excluded counts."""
    scores = np.asarray(result.scores, dtype=float)
    included = np.asarray(result.membership, dtype=bool)
    low, high = float(scores.min()), float(scores.max())
    if not high > low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    return ScoreHistogram(
        edges=tuple(float(e) for e in edges),
        included=tuple(int(c) for c in np.histogram(scores[included], edges)[0]),
        excluded=tuple(int(c) for c in np.histogram(scores[~included], edges)[0]),
    )


def run_release_gate(
    outcome: FederationOutcome,
    settings: ReleaseGateSettings,
    *,
    spec_path: Path,
    ledger: PlatformLedger,
    rows: EncodedData | None = None,
) -> tuple[EmpiricalAuditStatement, ...]:
    """Audit every declared configuration; ledger each result; block on a refuted claim.

    Returns the card's statements (all passed). ``rows``: the platform's data already
    encoded (default: read ``settings.data`` through the spec).
    """
    if not settings.data.is_file():
        raise ReleaseGateError(f"release gate: platform data file {settings.data} does not exist")
    if rows is None:
        rows = read_partner_log(settings.data, outcome.plan.spec, policy=BadRowPolicy.SKIP)
    data_sha256 = sha256_file(settings.data)
    statements: list[EmpiricalAuditStatement] = []
    refuted: list[str] = []
    for index, (config, partners) in enumerate(declared_configurations(outcome).items()):
        result = run_empirical_audit(
            _audit_partner(config, settings, spec_path, len(rows) + settings.canaries),
            outcome.plan.model,
            canaries=settings.canaries,
            seed=settings.seed + index,
            rows=rows,
            mechanisms=config.mechanisms,
        )
        body = PlatformEmpiricalAudit(
            run_id=outcome.plan.run_id,
            partners=partners,
            model=config.model,
            dp_implementation=result.implementation,
            accountant=config.accountant,
            unit_of_privacy=config.unit.kind.value,
            max_rows_per_unit=config.unit.max_rows,
            mechanisms=config.mechanisms,
            delta=result.delta,
            claimed_epsilon=result.claimed_epsilon,
            lower_bound=result.lower_bound,
            confidence=result.confidence,
            canaries=result.canaries,
            guesses=result.guesses,
            correct=result.correct,
            data_sha256=data_sha256,
            histogram=score_histogram(result),
        )
        entry_hash = ledger.record_empirical_audit(body)
        logger.info("release gate, partners %s: %s", ", ".join(partners), result.summary())
        if not body.passed:
            refuted.append(
                f"partners {', '.join(partners)} ({config.dp_implementation}): empirical "
                f"epsilon >= {body.lower_bound:.3f} at {body.confidence:.0%} exceeds the "
                f"claimed {body.claimed_epsilon:.3f}"
            )
            continue
        statements.append(
            EmpiricalAuditStatement(
                partners=partners,
                model=config.model,
                dp_implementation=config.dp_implementation,
                claimed_epsilon=body.claimed_epsilon,
                lower_bound=body.lower_bound,
                confidence=body.confidence,
                canaries=body.canaries,
                ledger_entry=entry_hash,
                unit_of_privacy=body.unit_of_privacy,
            )
        )
    if refuted:
        raise ReleaseBlocked(
            f"run {outcome.plan.run_id}: publication blocked by the release gate: "
            + "; ".join(refuted)
            + ". The audits are in the platform ledger; `fedctr audit` reports them."
        )
    return tuple(statements)


def release_gate_settings(
    raw: Mapping[str, Any], *, base: Path, default_data: Path | None, check: Checker
) -> ReleaseGateSettings | None:
    """``[release_gate]`` of a config file (``raw`` is the whole file), or None when the
    table is absent or says ``required = false``. Paths are relative to ``base``."""
    if "release_gate" not in raw:
        return None
    table = check.table(raw, "release_gate", known={"required", "data", "canaries", "seed"})
    check = check.at("[release_gate]")
    if not check.choice(table.get("required", True), "required", (True, False)):
        return None
    data = table.get("data")
    path = (base / str(data)).resolve() if data else default_data
    if path is None:
        check.fail("needs 'data' (a file the platform holds) or [platform] eval_data")
    return ReleaseGateSettings(
        data=path,
        canaries=check.integer(table.get("canaries", 1000), "canaries", minimum=10),
        seed=check.integer(table.get("seed", 0), "seed"),
    )


__all__ = [
    "ReleaseBlocked",
    "ReleaseGateError",
    "ReleaseGateSettings",
    "declared_configurations",
    "release_gate_settings",
    "run_release_gate",
    "score_histogram",
]
