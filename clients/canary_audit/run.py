"""Empirical privacy audit of a partner node: one training run with canaries.

The compliance audit recomputes every claimed epsilon from the recorded (sigma, q,
steps); it cannot see whether the training code delivers that epsilon. A clipping,
noise-scale or sampling bug would pass it. This module runs the record-level one-run
audit of Steinke, Nasr & Jagielski 2023 ("Privacy Auditing with One (1) Training
Run", arXiv 2305.08846; the bound is :mod:`fedctr.privacy.audit.one_run`) through the
partner's *real* training path and returns an empirical lower bound on epsilon at 95%
confidence. If the lower bound exceeds the epsilon the node claims, the claim is
refuted: the implementation leaks more than its accounting says (``passed`` is False).
A correct implementation passes with probability >= 95% whatever the canaries and
scores, because the bound is valid for any guesses computed from the output.

How the run is set up, and why
------------------------------
* **The real path.** A :class:`fedctr.clients.node.PartnerNode` (subclassed only to hand it
  its rows in memory, as ``bench.utility.inprocess.InMemoryPartner`` does) with its own
  temporary signing key, ledger and state directory runs ``node.train`` once per
  round, the returned weights fed back in (a federation of this one partner). That is
  the partner's calibration (``plan_release`` from its budget over its planned
  rounds), its DP-SGD implementation, CSPRNG sampling and noise, budget check and
  signed ledger. Nothing of the partner's real state or ledger is read or written: the
  audit spends a throw-away budget, never the partner's.
* **Canaries** (``m`` rows in the partner's encoded format, each included
  independently with probability 1/2 from the audit's own seeded generator). Each
  canary gets, in every categorical field that has enough of them, its *own* bucket
  that no real row of the partner's data hits (drawn at random among the unused
  buckets, distinct across canaries), label 1 (clicks: real rows are mostly 0, so a
  canary's loss gradient is large), and zero numeric / dense features. Its gradient
  then lands on rows of the embedding / first-order tables that nothing else touches:
  the only other thing that moves those rows is the DP noise, so the test
  "was this canary trained on?" faces exactly the mechanism's noise and nothing of the
  other rows' learning. Zero numerics keep the canary's gradient off the shared
  weights (bar the bias), so clipping does not spend its norm there. Fields with too
  few unused buckets get bucket 0 ("missing") and are not scored.
* **Score** (white-box, every round's model kept): for canary ``i`` and round ``r``,
  the change of its own rows projected on its unit descent direction at the round's
  start, summed over rounds::

      s_i = sum_r < W_r[rows_i] - W_{r-1}[rows_i],  -g_i(W_{r-1}) / |g_i(W_{r-1})| >

  where ``g_i`` is the canary's loss gradient restricted to its own rows. Why this
  one: a round's update of those rows is (optimizer-scaled) noise plus, when the
  canary was sampled, its clipped gradient; the projection on the gradient direction
  is the likelihood-ratio statistic of the Gaussian mechanism (Neyman-Pearson), the
  unit norm puts every canary's noise on the same scale, and restricting to the
  canary's own rows drops the shared parameters, whose updates carry every other row
  and are only noise for this test. Unlike the loss drop, which telescopes over rounds
  to ``loss(W_0) - loss(W_R)`` when rounds are chained, it uses each round's model.

* **User-level partners** (``[privacy] unit = "user"``): a canary is a *user* with
  ``max_rows_per_user`` identical rows (the most one user may bring to a step), on a
  user id no real row has; membership is drawn per canary user and scored on its own
  rows as above. A per-row clipping bug lets such a user move its rows ``r`` times
  further than a per-user clip allows, which is what this shape exposes.

What the bound means. ``lower_bound`` refutes "(eps, delta)-DP for one unit" for
every eps below it, at ``confidence``, for this training configuration. It is not an
estimate of the true epsilon: one-run audits are loose (in the tests' configuration a
correct implementation shows about 0.1 at claimed epsilon 1, 0.4 at 3 and 1.0 at 8, with
2000 canaries), so a pass says "no bug large enough for m canaries to see"; the
power tests in
``tests/privacy/test_empirical_audit.py`` measure which bugs are that large.
"""

from __future__ import annotations

import itertools
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedctr.clients.config import PartnerConfig
from fedctr.clients.node import PartnerNode
from fedctr.clients.state import PartnerState
from fedctr.models import CTRModel, FeatureSpec, ModelConfig, build_model, load_spec
from fedctr.models.layers import FieldEmbedding
from fedctr.models.logs.reader import EncodedData, read_partner_log
from fedctr.privacy.audit.one_run import OneRunBound, epsilon_lower_bound
from fedctr.privacy.budget import DPSGDRound
from fedctr.privacy.errors import PrivacyError
from fedctr.privacy.signing import generate_signing_key, save_private_key
from fedctr.privacy.wire import TrainReply
from fedctr.validate import Checker

logger = logging.getLogger(__name__)

# The level at which the audit refutes a claim; recorded in every result.
AUDIT_CONFIDENCE = 0.95


class EmpiricalAuditError(PrivacyError):
    """The canary audit cannot run on this partner (no DP, no room for canaries, ...)."""


@dataclass(frozen=True)
class Canaries:
    """The audit's canary rows and which of them train.

    ``rows`` are all ``m`` canaries (in or out), one row each; ``included[i]`` was
    drawn with probability 1/2 before training; ``own_fields`` are the categorical
    fields whose bucket is the canary's alone (the scored rows). A user-level canary
    trains as ``rows_per_canary`` copies of its row under its own user id
    (``users[i]``; ``None`` for example-level canaries).
    """

    rows: EncodedData
    included: np.ndarray  # bool [m]
    own_fields: tuple[int, ...]
    rows_per_canary: int = 1
    users: np.ndarray | None = None  # int64 [m]

    @property
    def m(self) -> int:
        return len(self.rows)

    def training_rows(self) -> EncodedData:
        """The included canaries as the node trains on them (copies and user ids)."""
        index = np.repeat(np.flatnonzero(self.included), self.rows_per_canary)
        rows = self.rows.take(index)
        if self.users is None:
            return rows
        return replace(rows, users=self.users[index])


@dataclass(frozen=True)
class EmpiricalAuditResult:
    """One canary audit of a partner's training path.

    ``claimed_epsilon``/``delta``: what the node's :class:`~fedctr.privacy.wire.TrainReply`
    stated after the last round (the epsilon the accounting says was spent).
    ``lower_bound``: the one-run bound at ``confidence`` over the canaries' membership;
    ``passed`` iff it does not exceed the claim. ``scores``/``membership``: per canary,
    for a plot of the two score distributions.
    """

    partner_id: str
    model: str
    implementation: str
    accountant: str
    unit_of_privacy: str
    rows_per_canary: int
    claimed_epsilon: float
    delta: float
    budget_epsilon: float
    lower_bound: float
    confidence: float
    canaries: int
    included: int
    guesses: int
    correct: int
    k_plus: int
    k_minus: int
    grid_size: int
    rounds: int
    noise_multiplier: float  # of the last round (the node calibrates per round)
    noise_multipliers: tuple[float, ...]
    sample_rate: float
    steps_per_round: int
    max_grad_norm: float
    seed: int
    seconds: float
    train_seconds: float
    scores: tuple[float, ...]
    membership: tuple[bool, ...]

    @property
    def passed(self) -> bool:
        """True unless the canaries refute the claimed epsilon at ``confidence``."""
        return self.lower_bound <= self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (lists for tuples, ``passed`` included)."""
        d = asdict(self)
        d["passed"] = self.passed
        d["noise_multipliers"] = list(self.noise_multipliers)
        d["scores"] = list(self.scores)
        d["membership"] = list(self.membership)
        return d

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED (claim refuted)"
        return (
            f"partner {self.partner_id} [{self.implementation}, {self.model}]: "
            f"empirical epsilon >= {self.lower_bound:.3f} at {self.confidence:.0%} "
            f"vs claimed {self.claimed_epsilon:.3f} (delta {self.delta:g}): {verdict}; "
            f"{self.correct}/{self.guesses} guesses right on {self.canaries} canaries"
        )


class _AuditNode(PartnerNode):
    """The partner's node with its rows (real + included canaries) held in memory.

    With ``mechanisms`` (one declared DP-SGD round per round) it runs exactly those
    instead of calibrating its own: the release gate audits the configuration partners
    declared, which their own calibration chose. Everything after the calibration
    (budget check, sampling, clipping, noise, accounting, ledger) is the node's own.
    """

    def __init__(
        self,
        config: PartnerConfig,
        rows: EncodedData,
        mechanisms: Sequence[DPSGDRound] | None = None,
    ) -> None:
        super().__init__(config)
        empty = rows.take(np.zeros(0, dtype=np.int64))
        self._rows = (rows, empty)
        self._mechanisms = None if mechanisms is None else tuple(mechanisms)

    def splits(self) -> tuple[EncodedData, EncodedData]:
        return self._rows

    def plan_release(self, state: PartnerState, num_examples: int) -> DPSGDRound:
        if self._mechanisms is None:
            return super().plan_release(state, num_examples)
        return self._mechanisms[len(state.rounds)]


def make_canaries(
    spec: FeatureSpec,
    real: EncodedData,
    *,
    m: int,
    rng: np.random.Generator,
    rows_per_user: int | None = None,
) -> Canaries:
    """``m`` canaries on buckets ``real`` never uses, and their membership.

    ``rows_per_user`` makes them user-level canaries (that many rows each, on user ids
    ``real.users`` does not hold). Buckets and users first, membership last, all from
    ``rng``: the canaries do not depend on which of them will train.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise EmpiricalAuditError(f"the audit needs at least 2 canaries, got {m!r}")
    fields = spec.categorical
    x_cat = np.zeros((m, len(fields)), dtype=np.int64)
    own: list[int] = []
    for j, feature in enumerate(fields):
        used = np.unique(real.x_cat[:, j]) if len(real) else np.zeros(0, np.int64)
        free = np.setdiff1d(np.arange(1, feature.buckets, dtype=np.int64), used)
        if len(free) >= m:
            x_cat[:, j] = rng.choice(free, size=m, replace=False)
            own.append(j)
        else:
            logger.info(
                "canaries: field '%s' has %d unused buckets for %d canaries; not scored",
                feature.name,
                len(free),
                m,
            )
    if not own:
        raise EmpiricalAuditError(
            f"no categorical field has {m} buckets unused by the partner's rows: canaries "
            "would share rows with real data; use fewer canaries"
        )
    rows = EncodedData(
        x_cat=x_cat,
        x_num=np.zeros((m, spec.num_numeric), dtype=np.float32),
        x_dense=np.zeros((m, spec.dense_dim()), dtype=np.float32),
        y=np.ones(m, dtype=np.float32),
    )
    users = None
    if rows_per_user is not None:
        if real.users is None:
            raise EmpiricalAuditError(
                "user-level canaries need the partner's user ids (the spec's user_key)"
            )
        taken = set(real.users.tolist())
        fresh: list[int] = []
        while len(fresh) < m:
            candidate = int(rng.integers(-(2**63), 2**63 - 1, dtype=np.int64))
            if candidate not in taken:
                taken.add(candidate)
                fresh.append(candidate)
        users = np.array(fresh, dtype=np.int64)
    included = rng.random(m) < 0.5
    return Canaries(
        rows=rows,
        included=included,
        own_fields=tuple(own),
        rows_per_canary=rows_per_user or 1,
        users=users,
    )


def _concat(a: EncodedData, b: EncodedData) -> EncodedData:
    users = None
    if a.users is not None and b.users is not None:
        users = np.ascontiguousarray(np.concatenate([a.users, b.users]))
    return EncodedData(
        x_cat=np.ascontiguousarray(np.concatenate([a.x_cat, b.x_cat])),
        x_num=np.ascontiguousarray(np.concatenate([a.x_num, b.x_num])),
        x_dense=np.ascontiguousarray(np.concatenate([a.x_dense, b.x_dense])),
        y=np.ascontiguousarray(np.concatenate([a.y, b.y])),
        users=users,
    )


def _own_row_index(model: nn.Module, canaries: Canaries) -> list[tuple[str, torch.Tensor]]:
    """(state-dict key of a field table, [m, own fields] row ids) for every field table."""
    x_cat = torch.from_numpy(canaries.rows.x_cat)
    cols = torch.tensor(canaries.own_fields, dtype=torch.long)
    out = []
    for name, module in model.named_modules():
        if isinstance(module, FieldEmbedding):
            key = f"{name}.embedding.weight" if name else "embedding.weight"
            out.append((key, x_cat[:, cols] + module.offsets[cols]))
    if not out:
        raise EmpiricalAuditError(
            "the model has no categorical field table (fedctr.models.layers.FieldEmbedding): the "
            "canaries' own rows cannot be located"
        )
    return out


def _descent_directions(
    model: CTRModel, canaries: Canaries, index: list[tuple[str, torch.Tensor]]
) -> list[torch.Tensor]:
    """Per table, ``[m, own fields, dim]`` slices of every canary's unit descent direction
    (jointly normalised over the tables), from one backward pass.

    One pass suffices: no two canaries (and no real row) share an own row, so the
    gradient of the summed loss on canary ``i``'s rows is canary ``i``'s gradient.
    """
    x_cat, x_num, x_dense, y = canaries.rows.tensors()
    model.zero_grad(set_to_none=True)
    model.train(False)
    logits = model(x_cat, x_num, x_dense)
    nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum").backward()
    params = dict(model.named_parameters())
    grads = []
    for key, rows in index:
        g = params[key].grad
        grads.append(torch.zeros(*rows.shape, params[key].shape[1]) if g is None else g[rows])
    grads = [-g.double() for g in grads]
    norm = torch.sqrt(sum((g**2).sum(dim=(1, 2)) for g in grads))
    scale = torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))
    return [g * scale[:, None, None] for g in grads]


def canary_round_scores(
    spec: FeatureSpec,
    model_config: ModelConfig,
    canaries: Canaries,
    before: dict[str, torch.Tensor],
    after: dict[str, torch.Tensor],
) -> np.ndarray:
    """``[m]``: each canary's own-row change over one round, on its descent direction."""
    model = build_model(spec, model_config)
    model.load_state_dict(before, strict=True)
    index = _own_row_index(model, canaries)
    directions = _descent_directions(model, canaries, index)
    score = torch.zeros(canaries.m, dtype=torch.float64)
    for (key, rows), u in zip(index, directions, strict=True):
        change = (after[key].double() - before[key].double())[rows]
        score += (change * u).sum(dim=(1, 2))
    return score.numpy()


def run_empirical_audit(
    config: PartnerConfig,
    model_config: ModelConfig,
    *,
    canaries: int,
    seed: int,
    rounds: int | None = None,
    implementation: str | None = None,
    rows: EncodedData | None = None,
    confidence: float = AUDIT_CONFIDENCE,
    training_seed: int | None = None,
    work_dir: Path | None = None,
    mechanisms: Sequence[DPSGDRound] | None = None,
) -> EmpiricalAuditResult:
    """Audit ``config``'s training path with ``canaries`` canaries in one run.

    ``rounds`` defaults to the partner's ``planned_rounds`` (the run it budgets for).
    ``implementation`` overrides ``[privacy] dp_implementation`` (a registered name).
    ``rows`` are the partner's encoded rows (default: its whole log, read through the
    spec as the node reads it; the audit keeps no holdout). ``seed`` draws the canaries
    and their membership. ``training_seed`` makes noise and sampling reproducible
    (tests only: a known key makes the noise known); by default the node draws fresh
    CSPRNG keys as in production. ``work_dir`` holds the throw-away key, ledger and
    state (default: a temporary directory, removed afterwards). ``mechanisms``: run
    exactly these declared DP-SGD rounds (one per round; ``rounds`` defaults to their
    number) instead of the node's calibration (the platform's release gate).
    """
    started = time.perf_counter()
    if not config.privacy.enabled:
        raise EmpiricalAuditError(
            f"partner '{config.partner_id}' trains without DP: there is no claim to audit"
        )
    privacy = config.privacy
    if implementation is not None:
        privacy = replace(privacy, dp_implementation=implementation)
    if rounds is None:
        rounds = privacy.planned_rounds if mechanisms is None else len(mechanisms)
    if mechanisms is not None and len(mechanisms) != rounds:
        raise EmpiricalAuditError(
            f"{len(mechanisms)} declared mechanisms for {rounds} rounds: give one per round"
        )
    Checker(EmpiricalAuditError).integer(rounds, "rounds", minimum=1)
    if rounds > privacy.planned_rounds:
        raise EmpiricalAuditError(
            f"rounds={rounds} exceeds the partner's planned_rounds={privacy.planned_rounds}: "
            "its node would refuse the extra rounds"
        )
    spec = load_spec(config.spec)
    if rows is None:
        rows = read_partner_log(config.data, spec, policy=config.bad_rows)
    rng = np.random.default_rng(seed)
    unit = privacy.unit_of_privacy
    canary_set = make_canaries(
        spec, rows, m=canaries, rng=rng, rows_per_user=unit.max_rows if unit.is_user else None
    )
    train_rows = _concat(rows, canary_set.training_rows())

    with tempfile.TemporaryDirectory(prefix="fedctr-empirical-audit-", dir=work_dir) as tmp:
        base = Path(tmp)
        key = save_private_key(generate_signing_key(), base / "audit.key")
        audit_config = replace(
            config,
            state_dir=base / "state",
            signing_key=key,
            ledger=base / "ledger.jsonl",
            privacy=privacy,
        )
        node = _AuditNode(audit_config, train_rows, mechanisms)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            weights = {
                k: v.detach().clone()
                for k, v in build_model(spec, model_config).state_dict().items()
            }
        models = [weights]
        replies: list[TrainReply] = []
        train_started = time.perf_counter()
        for r in range(1, rounds + 1):
            weights, reply = node.train(
                weights,
                model_config=model_config,
                spec_hash=spec.spec_hash,
                run_id=f"empirical-audit-{seed}",
                server_round=r,
                seed=None if training_seed is None else training_seed * 1_000_003 + r,
            )
            if reply is None:  # pragma: no cover - guarded by privacy.enabled above
                raise EmpiricalAuditError("the node returned no DP reply")
            models.append(weights)
            replies.append(reply)
        train_seconds = time.perf_counter() - train_started

    scores = np.zeros(canary_set.m)
    for before, after in itertools.pairwise(models):
        scores += canary_round_scores(spec, model_config, canary_set, before, after)
    last = replies[-1]
    bound = epsilon_lower_bound(
        scores, canary_set.included, confidence=confidence, delta=last.delta
    )
    result = _result(
        config,
        model_config,
        canary_set,
        scores,
        bound,
        replies,
        seed=seed,
        seconds=time.perf_counter() - started,
        train_seconds=train_seconds,
    )
    logger.info("empirical audit: %s", result.summary())
    return result


def _result(
    config: PartnerConfig,
    model_config: ModelConfig,
    canaries: Canaries,
    scores: np.ndarray,
    bound: OneRunBound,
    replies: Sequence[TrainReply],
    *,
    seed: int,
    seconds: float,
    train_seconds: float,
) -> EmpiricalAuditResult:
    last = replies[-1]
    if not math.isfinite(last.epsilon):
        raise EmpiricalAuditError("the node claimed an infinite epsilon")
    return EmpiricalAuditResult(
        partner_id=config.partner_id,
        model=model_config.name,
        implementation=last.dp_implementation,
        accountant=last.accountant,
        unit_of_privacy=last.unit_of_privacy,
        rows_per_canary=canaries.rows_per_canary,
        claimed_epsilon=float(last.epsilon),
        delta=float(last.delta),
        budget_epsilon=float(last.budget.epsilon),
        lower_bound=float(bound.epsilon),
        confidence=bound.confidence,
        canaries=canaries.m,
        included=int(canaries.included.sum()),
        guesses=bound.guesses,
        correct=bound.correct,
        k_plus=bound.k_plus,
        k_minus=bound.k_minus,
        grid_size=bound.candidates,
        rounds=len(replies),
        noise_multiplier=float(last.release.noise_multiplier),
        noise_multipliers=tuple(float(r.release.noise_multiplier) for r in replies),
        sample_rate=float(last.release.sample_rate),
        steps_per_round=int(last.release.steps),
        max_grad_norm=float(last.release.max_grad_norm),
        seed=seed,
        seconds=round(seconds, 4),
        train_seconds=round(train_seconds, 4),
        scores=tuple(float(s) for s in scores),
        membership=tuple(bool(b) for b in canaries.included),
    )


__all__ = [
    "AUDIT_CONFIDENCE",
    "Canaries",
    "EmpiricalAuditError",
    "EmpiricalAuditResult",
    "canary_round_scores",
    "make_canaries",
    "run_empirical_audit",
]
