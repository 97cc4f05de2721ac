"""The wire contract: every value a partner may send the platform, and its privacy class.

A partner's rows are protected by its own (epsilon, delta) only if *everything* that
leaves its node is covered. This module is the one place that says what may leave:
each field of each message kind is

- a **DP release**, with the mechanism and accountant that cover it,
- **public by declaration**: a function of the partner's config, the spec or what
  the platform itself sent, never of the partner's rows, or
- **not sent**: listed here so the README, the card statement and the audit can say
  so, and a contract test can prove no reply carries it.

The partner's ClientApp builds replies only through :class:`TrainReply` and
:class:`ErrorReply`; the platform parses them back through the same types, which
refuse unknown, missing or ill-typed keys (fail closed). Neighbour relation: the
partner's declared unit of privacy (:mod:`fedctr.privacy.unit`), **add/remove one
row** of its training log (unit: one example) or **add/remove all rows of one
user** (unit: one user). Sampling rate and steps are declared in the partner's
config, so the accounted epsilon is itself data-independent; the number of users,
like the number of rows, is never sent.

Imports nothing outside ``privacy`` and the standard library (no Flower): records
travel as plain mappings that the Flower wiring wraps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import PurePath
from typing import Any, Literal

from fedctr.models.logs.errors import DataFileError
from fedctr.privacy.budget import (
    ACCOUNTANT_KINDS,
    AccountantKind,
    BucketSelection,
    DistributedNoise,
    DPSGDRound,
    PrivacyBudget,
)
from fedctr.privacy.errors import InvalidPrivacyParameter, PrivacyError
from fedctr.privacy.unit import UnitOfPrivacy
from fedctr.validate import IDENTIFIER, SHA256_HEX, Checker

NEIGHBOUR_RELATION = (
    "the partner's unit of privacy: add/remove one row (example) or all rows of one user (user)"
)

# Record names inside a Flower reply.
ARRAYS = "arrays"
METRICS = "metrics"
REPORT = "report"

# ---- platform -> partner: run facts (ConfigRecord "config"), never a privacy budget ----
# Both sides and the strategies take these names from here, the one definition.
CONFIG = "config"
SERVER_ROUND = "server-round"
RUN_ID = "run-id"
SPEC_HASH = "spec-hash"
MODEL_CONFIG = "model-config"  # JSON of fedctr.models.ModelConfig
PROXIMAL_MU = "proximal-mu"

# ---- partner -> platform metric names (declared in TRAIN_REPLY_FIELDS below) ----------
AGGREGATION_WEIGHT = "aggregation-weight"  # FedAvg's weighted_by_key: declared, not a count
EPSILON = "epsilon"
DELTA = "delta"
MAX_AGGREGATED = (EPSILON, DELTA)  # privacy metrics are the worst partner's, never averaged
PARTNER_ID = "partner-id"
SELECTION_DP_ADAFEST = "dp-adafest"
BUCKET_SELECTIONS = ("none", SELECTION_DP_ADAFEST)


class ContractViolation(PrivacyError, ValueError):
    """A reply carries a value the wire contract does not declare, or lacks one it needs."""


class FieldClass(StrEnum):
    """How a value that crosses a trust boundary is covered."""

    DP_RELEASE = "dp-release"
    PUBLIC = "public-by-declaration"
    NOT_SENT = "not-sent"


@dataclass(frozen=True)
class WireField:
    """One declared value: where it travels and why it may."""

    key: str
    record: str
    field_class: FieldClass
    accounting: str


# ---- partner -> platform: the train reply ---------------------------------------
_CONFIG = "partner config (data-independent)"
TRAIN_REPLY_FIELDS: tuple[WireField, ...] = (
    WireField(
        "*",
        ARRAYS,
        FieldClass.DP_RELEASE,
        "DP-SGD update: Poisson subsampled Gaussian (q, sigma, C, steps, and with bucket "
        "selection sigma_select, in this reply), composed in the partner's accountant and "
        "ledger. Under secure aggregation one array 'masked': that update quantized and masked "
        "(uniform on Z_2^64 alone), only the sum over surviving partners is unmasked; with "
        "distributed noise one clipped step plus a Skellam share, accounted on that sum",
    ),
    WireField(AGGREGATION_WEIGHT, METRICS, FieldClass.PUBLIC, _CONFIG + ": FedAvg weight"),
    WireField(
        "epsilon",
        METRICS,
        FieldClass.PUBLIC,
        "accountant(sigma, q, steps) of all releases (sigma composed with sigma_select under "
        "bucket selection; Skellam RDP against the platform for distributed noise): depends "
        "on the config only",
    ),
    WireField(DELTA, METRICS, FieldClass.PUBLIC, _CONFIG),
    WireField(PARTNER_ID, REPORT, FieldClass.PUBLIC, _CONFIG),
    WireField("accountant", REPORT, FieldClass.PUBLIC, _CONFIG),
    WireField("dp-implementation", REPORT, FieldClass.PUBLIC, _CONFIG),
    WireField("unit-of-privacy", REPORT, FieldClass.PUBLIC, _CONFIG + ": 'example' or 'user'"),
    WireField(
        "max-rows-per-unit",
        REPORT,
        FieldClass.PUBLIC,
        _CONFIG + ": 1 for an example, the declared max_rows_per_user for a user",
    ),
    WireField(
        "noise-multiplier",
        REPORT,
        FieldClass.PUBLIC,
        "calibrated from budget, q, steps and earlier releases: data-independent",
    ),
    WireField(
        "bucket-selection",
        REPORT,
        FieldClass.PUBLIC,
        _CONFIG + ": 'none' or 'dp-adafest' (DP selection of the embedding rows a step updates)",
    ),
    WireField(
        "selection-noise-multiplier",
        REPORT,
        FieldClass.PUBLIC,
        "calibrated with noise-multiplier from the declared ratio (0 without selection)",
    ),
    WireField(
        "selection-threshold",
        REPORT,
        FieldClass.PUBLIC,
        _CONFIG + ": the declared multiple times selection-noise-multiplier (0 without it)",
    ),
    WireField(
        "noise-distribution",
        REPORT,
        FieldClass.PUBLIC,
        _CONFIG + ": 'gaussian' (local DP-SGD) or 'skellam' (a distributed share under "
        "secure aggregation: one clipped step, noise-multiplier is sigma of the summed noise)",
    ),
    WireField(
        "min-noise-shares",
        REPORT,
        FieldClass.PUBLIC,
        _CONFIG + ": the fewest partners' shares a sum may hold (0 for local noise)",
    ),
    WireField(
        "l2-sensitivity",
        REPORT,
        FieldClass.PUBLIC,
        "SecAgg grid x learning rate x C / batch size + sqrt(model size): from the config, "
        "the platform's grid and the model (0 for local noise)",
    ),
    WireField(
        "l1-sensitivity",
        REPORT,
        FieldClass.PUBLIC,
        "min(l2^2, sqrt(model size) x l2) (0 for local noise)",
    ),
    WireField("sample-rate", REPORT, FieldClass.PUBLIC, _CONFIG + ": declared q"),
    WireField("steps", REPORT, FieldClass.PUBLIC, _CONFIG + ": ceil(local_epochs / q)"),
    WireField("max-grad-norm", REPORT, FieldClass.PUBLIC, _CONFIG),
    WireField("budget-epsilon", REPORT, FieldClass.PUBLIC, _CONFIG),
    WireField("budget-delta", REPORT, FieldClass.PUBLIC, _CONFIG),
    WireField(
        "base-model-hash", REPORT, FieldClass.PUBLIC, "hash of the weights the platform sent"
    ),
    WireField(
        "update-hash", REPORT, FieldClass.DP_RELEASE, "hash of the DP update (post-processing)"
    ),
    WireField(
        "secure-aggregation",
        REPORT,
        FieldClass.PUBLIC,
        "platform config the partner accepted: 'none', or 'secagg+' (then the arrays are one "
        "masked input, and update-hash commits to it)",
    ),
    WireField(
        "secagg-session",
        REPORT,
        FieldClass.PUBLIC,
        "the platform's session id (empty without secure aggregation)",
    ),
    WireField(
        "ledger-entry",
        REPORT,
        FieldClass.PUBLIC,
        "the partner's signed ledger entry: exactly the fields above",
    ),
)

# ---- partner -> platform: secure-aggregation protocol replies (record "secagg") -----
# Under secure aggregation the train reply's arrays are one masked input: the quantized
# DP update plus a self mask and pairwise masks, uniform on Z_2^64 on its own; only the
# sum over the surviving partners is ever unmasked (fedctr.privacy.secagg).
SECAGG = "secagg"
MASKED = "masked"
_FRESH = "fresh randomness of this session, independent of the partner's rows"
SECAGG_REPLY_FIELDS: tuple[WireField, ...] = (
    WireField("stage", SECAGG, FieldClass.PUBLIC, "the protocol step answered"),
    WireField(
        "key-c", SECAGG, FieldClass.PUBLIC, "setup: public key for share encryption; " + _FRESH
    ),
    WireField(
        "key-s", SECAGG, FieldClass.PUBLIC, "setup: public key for mask agreement; " + _FRESH
    ),
    WireField(
        "recipients", SECAGG, FieldClass.PUBLIC, "share-keys: neighbour node ids (public graph)"
    ),
    WireField(
        "ciphertexts",
        SECAGG,
        FieldClass.PUBLIC,
        "share-keys: Shamir shares of the two mask secrets, encrypted for each neighbour; "
        + _FRESH,
    ),
    WireField(
        "commitment",
        SECAGG,
        FieldClass.PUBLIC,
        "share-keys: SHA-256 of the self-mask seed; " + _FRESH,
    ),
    WireField("owners", SECAGG, FieldClass.PUBLIC, "unmask: the nodes whose shares follow"),
    WireField(
        "shares",
        SECAGG,
        FieldClass.PUBLIC,
        "unmask: self-mask shares of survivors, key shares of dropped nodes (never both of "
        "one node); they remove masks from the sum only. " + _FRESH,
    ),
)
SECAGG_STAGE_KEYS: Mapping[str, frozenset[str]] = {
    "setup": frozenset({"stage", "key-c", "key-s"}),
    "share-keys": frozenset({"stage", "recipients", "ciphertexts", "commitment"}),
    "unmask": frozenset({"stage", "owners", "shares"}),
}


def node_ids_to_bytes(nodes: list[int]) -> bytes:
    """Flower node ids are unsigned 64-bit: carried as little-endian words, not config ints."""
    return b"".join(int(n).to_bytes(8, "little", signed=False) for n in nodes)


def node_ids_from_bytes(raw: Any) -> list[int]:
    if not isinstance(raw, bytes) or len(raw) % 8:
        raise ContractViolation("a node list must be 8-byte little-endian words")
    return [int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8)]


def parse_secagg_reply(stage: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """An untrusted protocol reply for ``stage``: exact keys and typed values."""
    declared = SECAGG_STAGE_KEYS.get(stage)
    if declared is None:
        raise ContractViolation(f"undeclared secure-aggregation stage {stage!r}")
    if set(record) != declared or record.get("stage") != stage:
        raise ContractViolation(f"secure-aggregation '{stage}' reply carries undeclared keys")
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "stage":
            continue
        if key in ("recipients", "owners"):
            out[key] = node_ids_from_bytes(value)
        elif key in ("ciphertexts", "shares"):
            if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
                raise ContractViolation(f"secure-aggregation '{key}' must be a list of bytes")
            out[key] = list(value)
        elif not isinstance(value, bytes):
            raise ContractViolation(f"secure-aggregation '{key}' must be bytes")
        else:
            out[key] = value
    return out


# ---- partner -> platform: an error reply ----------------------------------------
ERROR_REPLY_FIELDS: tuple[WireField, ...] = (
    WireField("code", "error", FieldClass.PUBLIC, "a fixed code (ErrorCode)"),
    WireField("file", "error", FieldClass.PUBLIC, _CONFIG + ": the configured file's name"),
    WireField("column", "error", FieldClass.PUBLIC, "a column name of the public feature spec"),
    WireField("problem", "error", FieldClass.PUBLIC, "a fixed reason class (Problem)"),
)

# ---- values that never leave the partner -----------------------------------------
NOT_SENT: tuple[WireField, ...] = tuple(
    WireField(key, "-", FieldClass.NOT_SENT, why)
    for key, why in (
        ("num-examples", "exact row counts (training, holdout) stay local"),
        (
            "num-users",
            "the number of users (and rows per user) stays local; a refusal for delta >= 1/n "
            "is a non-DP bit that n >= 1/delta, as for rows",
        ),
        ("rows-skipped", "the count of skipped bad rows stays in the partner's log"),
        ("train-loss", "per-example loss is unbounded; not released"),
        ("evaluation", "partner-side evaluation is off: the platform evaluates on its own data"),
        ("compute-seconds", "timing is not reported"),
        ("row numbers and cell values of bad rows", "only in the partner's local log"),
        ("raw rows, feature values, user keys", "never leave the partner"),
    )
)

# ---- platform -> public: the model card ------------------------------------------
# Leaf paths of the signed card ("[]" any list item, "*" any subtree). Anything else in
# a card is undeclared, and the audit reports it as a finding.
_POST = "post-processing of the aggregated DP updates"
_GATE = (
    "release gate: the declared configuration run on the platform's own data with "
    "canaries (no partner row involved)"
)
CARD_FIELDS: tuple[WireField, ...] = tuple(
    WireField(path, "card", cls, why)
    for path, cls, why in (
        ("format", FieldClass.PUBLIC, "fixed"),
        ("format_version", FieldClass.PUBLIC, "fixed"),
        ("model_version", FieldClass.PUBLIC, "registry counter"),
        ("created_at", FieldClass.PUBLIC, "platform clock"),
        ("run_id", FieldClass.PUBLIC, "platform config"),
        ("rounds", FieldClass.PUBLIC, "rounds aggregated (which partners answered: see failures)"),
        ("weights.file", FieldClass.PUBLIC, "fixed"),
        ("weights.format", FieldClass.PUBLIC, "fixed"),
        ("weights.sha256", FieldClass.DP_RELEASE, _POST),
        ("feature_spec.hash", FieldClass.PUBLIC, "the public feature spec"),
        ("feature_spec.spec.*", FieldClass.PUBLIC, "the public feature spec"),
        ("model.*", FieldClass.PUBLIC, "platform model config"),
        ("privacy.num_partners", FieldClass.PUBLIC, "partners whose updates were aggregated"),
        ("privacy.neighbour_relation", FieldClass.PUBLIC, "fixed"),
        ("privacy.partners[].partner_id", FieldClass.PUBLIC, _CONFIG),
        ("privacy.partners[].epsilon", FieldClass.PUBLIC, "accountant of declared mechanisms"),
        ("privacy.partners[].delta", FieldClass.PUBLIC, _CONFIG),
        ("privacy.partners[].accountant", FieldClass.PUBLIC, _CONFIG),
        ("privacy.partners[].unit_of_privacy", FieldClass.PUBLIC, _CONFIG),
        ("privacy.partners[].max_rows_per_unit", FieldClass.PUBLIC, _CONFIG),
        ("privacy.partners[].bucket_selection", FieldClass.PUBLIC, _CONFIG),
        ("privacy.partners[].noise", FieldClass.PUBLIC, _CONFIG + ": written when 'distributed'"),
        ("privacy.partners[].dp_implementation", FieldClass.PUBLIC, _CONFIG),
        ("privacy.partners[].rounds_contributed", FieldClass.PUBLIC, "rounds aggregated"),
        *(
            (f"privacy.empirical_audits[].{key}", FieldClass.PUBLIC, _GATE)
            for key in (
                "partners[]",
                "model",
                "dp_implementation",
                "claimed_epsilon",
                "lower_bound",
                "confidence",
                "canaries",
                "ledger_entry",
                "passed",
                "unit_of_privacy",
            )
        ),
        (
            "metrics.platform_holdout.*",
            FieldClass.DP_RELEASE,
            _POST + ", evaluated on the platform's own data",
        ),
        ("training.strategy", FieldClass.PUBLIC, "platform config"),
        ("training.min_partners", FieldClass.PUBLIC, "platform config"),
        ("training.rounds_planned", FieldClass.PUBLIC, "platform config"),
        ("training.secure_aggregation.*", FieldClass.PUBLIC, "platform config"),
        ("training.rounds_aggregated", FieldClass.PUBLIC, "rounds aggregated"),
        ("training.failures[].round", FieldClass.PUBLIC, "error replies: code only"),
        ("training.failures[].node_id", FieldClass.PUBLIC, "Flower node id"),
        ("training.failures[].kind", FieldClass.PUBLIC, "error replies: code only"),
        (
            "serving.base_rate",
            FieldClass.DP_RELEASE,
            _POST + " on the platform's own data, or platform config",
        ),
        ("serving.mean_prediction_low", FieldClass.DP_RELEASE, "as serving.base_rate"),
        ("serving.mean_prediction_high", FieldClass.DP_RELEASE, "as serving.base_rate"),
        ("serving.non_personalized.*", FieldClass.PUBLIC, "spec and platform config"),
        ("signing.algorithm", FieldClass.PUBLIC, "fixed"),
        ("signing.key_id", FieldClass.PUBLIC, "the platform's public key"),
    )
)


def _leaf_paths(value: Any, prefix: str) -> list[tuple[str, bool]]:
    """(path, is an empty container) of every leaf of a JSON value."""
    if isinstance(value, Mapping):
        if not value:
            return [(prefix, True)]
        out: list[tuple[str, bool]] = []
        for key, item in value.items():
            out += _leaf_paths(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list):
        items = [p for item in value for p in _leaf_paths(item, prefix + "[]")]
        return items or [(prefix, True)]
    return [(prefix, False)]


def _declared(path: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return path == pattern[:-2] or path.startswith(pattern[:-1])
    return path == pattern


def _declared_container(path: str, pattern: str) -> bool:
    """An empty section (``{}`` / ``[]``) is declared if a pattern lies inside it."""
    return pattern == path or pattern.startswith((path + ".", path + "["))


def undeclared_card_fields(card: Mapping[str, Any]) -> list[str]:
    """Leaf paths of ``card`` that :data:`CARD_FIELDS` does not declare (sorted, unique).

    An empty section (``metrics: {}``, ``failures: []``) counts as declared when a
    declared field lives inside it.
    """
    patterns = [f.key for f in CARD_FIELDS]
    out = set()
    for path, empty in _leaf_paths(card, ""):
        if any(_declared(path, pat) for pat in patterns):
            continue
        if empty and any(_declared_container(path, pat) for pat in patterns):
            continue
        out.add(path)
    return sorted(out)


# Message kinds a partner answers; ``evaluate`` is refused (see NOT_SENT).
MessageKind = Literal["train-reply", "error-reply", "secagg-reply"]
CONTRACT: Mapping[str, tuple[WireField, ...]] = {
    "train-reply": TRAIN_REPLY_FIELDS,
    "error-reply": ERROR_REPLY_FIELDS,
    "secagg-reply": SECAGG_REPLY_FIELDS,
}


# ---- error replies -------------------------------------------------------------
class ErrorCode(IntEnum):
    """fedctr refusal codes (Flower's own codes are small integers)."""

    BUDGET_REFUSED = 1001
    BAD_DATA = 1002
    SPEC_MISMATCH = 1003
    PARTNER = 1004
    PACKING = 1005  # packed arrays that do not match their layout
    EVALUATION_OFF = 1006

    @property
    def kind(self) -> str:
        return _ERROR_KINDS[self]


_ERROR_KINDS = {
    ErrorCode.BUDGET_REFUSED: "budget-refused",
    ErrorCode.BAD_DATA: "bad-data",
    ErrorCode.SPEC_MISMATCH: "spec-mismatch",
    ErrorCode.PARTNER: "partner-error",
    ErrorCode.PACKING: "unreadable-arrays",
    ErrorCode.EVALUATION_OFF: "evaluation-off",
}


class Problem(StrEnum):
    """Why a partner could not contribute, as a fixed class: never a value or row number."""

    # data files (bad-data): the values of fedctr.models.logs.DataProblem, one for one
    UNREADABLE_FILE = "unreadable-file"
    EMPTY_FILE = "empty-file"
    MISSING_COLUMN = "missing-column"
    BAD_HEADER = "bad-header"
    BAD_LABEL = "bad-label"
    NOT_A_NUMBER = "not-a-number"
    INFINITE_VALUE = "infinite-value"
    BAD_EMBEDDING = "bad-embedding"
    BAD_CATEGORY = "bad-category"
    BAD_LAYOUT = "bad-layout"
    MISSING_USER_KEY = "missing-user-key"
    ALL_ROWS_BAD = "all-rows-bad"
    # refusals
    BUDGET_EXHAUSTED = "budget-exhausted"
    SPEC_MISMATCH = "spec-mismatch"
    EVALUATION_OFF = "evaluation-off"
    PRIVACY_STATE = "privacy-state"
    ALREADY_RELEASED = "already-released"  # the round was released from another model
    SECAGG_REFUSED = "secagg-refused"  # a secure-aggregation request the partner refuses
    CONFIG = "config"
    UNREADABLE_ARRAYS = "unreadable-arrays"
    INTERNAL = "internal"


_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


@dataclass(frozen=True, kw_only=True)
class ErrorReply:
    """What the platform learns of a failed message: code, file, column, reason class."""

    code: ErrorCode
    problem: Problem
    file: str | None = None
    column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", ErrorCode(self.code))
        object.__setattr__(self, "problem", Problem(self.problem))
        for name in ("file", "column"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and _NAME.fullmatch(value)):
                raise ContractViolation(f"error reply {name} must match {_NAME.pattern}")

    def reason(self) -> str:
        """The Flower ``Error.reason`` text: ``key=value`` pairs of declared fields only."""
        parts = [f"problem={self.problem.value}"]
        if self.file is not None:
            parts.append(f"file={self.file}")
        if self.column is not None:
            parts.append(f"column={self.column}")
        return " ".join(parts)

    @classmethod
    def for_data_file(cls, exc: DataFileError) -> ErrorReply:
        """The ``bad-data`` reply for a log that cannot be read: reason class, the file's
        *name* and the spec column, never its path, a row number or a cell value.

        A file name or column that the name pattern refuses is left out rather than
        failing the reply.
        """

        def declarable(value: str | None) -> str | None:
            return value if value is not None and _NAME.fullmatch(value) else None

        return cls(
            code=ErrorCode.BAD_DATA,
            problem=Problem(exc.problem.value),
            file=declarable(PurePath(exc.file).name),
            column=declarable(exc.column),
        )

    @classmethod
    def parse(cls, code: int, reason: str) -> ErrorReply:
        """Parse an untrusted error reply; anything undeclared is a ContractViolation."""
        try:
            error_code = ErrorCode(code)
        except ValueError as exc:
            raise ContractViolation(f"undeclared error code {code!r}") from exc
        values: dict[str, str] = {}
        for part in str(reason or "").split():
            key, sep, value = part.partition("=")
            if not sep or key not in ("problem", "file", "column") or key in values:
                raise ContractViolation("error reason carries undeclared text")
            values[key] = value
        try:
            return cls(
                code=error_code,
                problem=Problem(values.get("problem", "")),
                file=values.get("file"),
                column=values.get("column"),
            )
        except ValueError as exc:
            raise ContractViolation(f"error reply does not follow the contract: {exc}") from exc


# ---- train replies ---------------------------------------------------------------
_CHECK = Checker(ContractViolation)


def _keys(record: Mapping[str, Any] | None, name: str, declared: set[str]) -> Mapping[str, Any]:
    if record is None:
        raise ContractViolation(f"train reply lacks its '{name}' record")
    keys = set(record)
    if keys != declared:
        raise ContractViolation(
            f"train reply '{name}': undeclared keys {sorted(keys - declared)}, "
            f"missing keys {sorted(declared - keys)}"
        )
    return record


_METRIC_KEYS = {f.key for f in TRAIN_REPLY_FIELDS if f.record == METRICS}
_REPORT_KEYS = {f.key for f in TRAIN_REPLY_FIELDS if f.record == REPORT}


@dataclass(frozen=True, kw_only=True)
class TrainReply:
    """Everything but the weights that a partner sends after a DP training round."""

    partner_id: str
    release: DPSGDRound
    accountant: AccountantKind
    dp_implementation: str
    epsilon: float
    delta: float
    budget: PrivacyBudget
    aggregation_weight: float
    base_model_hash: str
    update_hash: str
    ledger_entry: str
    unit: UnitOfPrivacy = field(default_factory=UnitOfPrivacy.example)
    secure_aggregation: str = "none"
    secagg_session: str = ""

    def __post_init__(self) -> None:
        # Built by the partner and parsed by the platform: one validation for both.
        self.from_records(self.to_records())

    @property
    def unit_of_privacy(self) -> str:
        return self.unit.kind.value

    def to_records(self) -> dict[str, dict[str, Any]]:
        """``{record name: {key: value}}``: the metric and config records of the reply."""
        r = self.release
        return {
            METRICS: {
                "aggregation-weight": self.aggregation_weight,
                "epsilon": self.epsilon,
                "delta": self.delta,
            },
            REPORT: {
                "partner-id": self.partner_id,
                "accountant": self.accountant,
                "dp-implementation": self.dp_implementation,
                "unit-of-privacy": self.unit.kind.value,
                "max-rows-per-unit": self.unit.max_rows,
                "noise-multiplier": r.noise_multiplier,
                "bucket-selection": "none" if r.selection is None else SELECTION_DP_ADAFEST,
                "selection-noise-multiplier": 0.0
                if r.selection is None
                else r.selection.noise_multiplier,
                "selection-threshold": 0.0 if r.selection is None else r.selection.threshold,
                "noise-distribution": "gaussian" if r.distributed is None else "skellam",
                "min-noise-shares": 0 if r.distributed is None else r.distributed.min_shares,
                "l2-sensitivity": 0.0 if r.distributed is None else r.distributed.l2_sensitivity,
                "l1-sensitivity": 0.0 if r.distributed is None else r.distributed.l1_sensitivity,
                "sample-rate": r.sample_rate,
                "steps": r.steps,
                "max-grad-norm": r.max_grad_norm,
                "budget-epsilon": self.budget.epsilon,
                "budget-delta": self.budget.delta,
                "base-model-hash": self.base_model_hash,
                "update-hash": self.update_hash,
                "secure-aggregation": self.secure_aggregation,
                "secagg-session": self.secagg_session,
                "ledger-entry": self.ledger_entry,
            },
        }

    @classmethod
    def from_records(cls, records: Mapping[str, Mapping[str, Any] | None]) -> TrainReply:
        """Parse an untrusted reply: exact key sets, typed values, or ContractViolation."""
        undeclared = set(records) - {METRICS, REPORT}
        if undeclared:
            raise ContractViolation(f"train reply carries undeclared records {sorted(undeclared)}")
        metrics = _keys(records.get(METRICS), METRICS, _METRIC_KEYS)
        report = _keys(records.get(REPORT), REPORT, _REPORT_KEYS)
        accountant = _CHECK.choice(report["accountant"], "accountant", ACCOUNTANT_KINDS)
        weight = _CHECK.positive(metrics["aggregation-weight"], "aggregation-weight")
        ledger_entry = report["ledger-entry"]
        if not isinstance(ledger_entry, str) or not ledger_entry:
            raise ContractViolation("'ledger-entry' must be the signed entry (JSON text)")
        try:
            return cls._build(metrics, report, accountant, weight, ledger_entry)
        except InvalidPrivacyParameter as exc:
            raise ContractViolation(f"train reply: {exc}") from exc

    @classmethod
    def _build(
        cls,
        metrics: Mapping[str, Any],
        report: Mapping[str, Any],
        accountant: AccountantKind,
        weight: float,
        ledger_entry: str,
    ) -> TrainReply:
        reply = object.__new__(cls)
        values = {
            "partner_id": _CHECK.text(report["partner-id"], "partner-id", IDENTIFIER),
            "release": DPSGDRound(
                noise_multiplier=_CHECK.number(report["noise-multiplier"], "noise-multiplier"),
                sample_rate=_CHECK.number(report["sample-rate"], "sample-rate"),
                steps=_CHECK.integer(report["steps"], "steps"),
                max_grad_norm=_CHECK.number(report["max-grad-norm"], "max-grad-norm"),
                selection=_selection(report),
                distributed=_distributed(report),
            ),
            "accountant": accountant,
            "dp_implementation": _CHECK.text(
                report["dp-implementation"], "dp-implementation", IDENTIFIER
            ),
            "epsilon": _CHECK.number(metrics["epsilon"], "epsilon"),
            "delta": _CHECK.number(metrics["delta"], "delta"),
            "budget": PrivacyBudget(
                epsilon=_CHECK.number(report["budget-epsilon"], "budget-epsilon"),
                delta=_CHECK.number(report["budget-delta"], "budget-delta"),
            ),
            "aggregation_weight": weight,
            "base_model_hash": _CHECK.text(
                report["base-model-hash"], "base-model-hash", SHA256_HEX
            ),
            "update_hash": _CHECK.text(report["update-hash"], "update-hash", SHA256_HEX),
            "ledger_entry": ledger_entry,
            "unit": UnitOfPrivacy(
                report["unit-of-privacy"],
                _CHECK.integer(report["max-rows-per-unit"], "max-rows-per-unit", minimum=1),
            ),
            **_secure_aggregation(report),
        }
        for key, value in values.items():
            object.__setattr__(reply, key, value)
        return reply


SECURE_AGGREGATIONS = ("none", "secagg+")
_SESSION = re.compile(r"[0-9a-f]{32}")


def _secure_aggregation(report: Mapping[str, Any]) -> dict[str, str]:
    kind = _CHECK.choice(report["secure-aggregation"], "secure-aggregation", SECURE_AGGREGATIONS)
    session = report["secagg-session"]
    if kind == "none":
        if session != "":
            raise ContractViolation("no secure aggregation: secagg-session must be empty")
    else:
        session = _CHECK.text(session, "secagg-session", _SESSION)
    return {"secure_aggregation": kind, "secagg_session": session}


def _distributed(report: Mapping[str, Any]) -> DistributedNoise | None:
    kind = _CHECK.choice(
        report["noise-distribution"], "noise-distribution", ("gaussian", "skellam")
    )
    shares = _CHECK.integer(report["min-noise-shares"], "min-noise-shares")
    l2 = _CHECK.number(report["l2-sensitivity"], "l2-sensitivity")
    l1 = _CHECK.number(report["l1-sensitivity"], "l1-sensitivity")
    if kind == "gaussian":
        if shares != 0 or l2 != 0 or l1 != 0:
            raise ContractViolation("local noise: min-noise-shares and sensitivities must be 0")
        return None
    return DistributedNoise(min_shares=shares, l2_sensitivity=l2, l1_sensitivity=l1)


def _selection(report: Mapping[str, Any]) -> BucketSelection | None:
    kind = _CHECK.choice(report["bucket-selection"], "bucket-selection", BUCKET_SELECTIONS)
    sigma = _CHECK.number(report["selection-noise-multiplier"], "selection-noise-multiplier")
    threshold = _CHECK.number(report["selection-threshold"], "selection-threshold")
    if kind == "none":
        if sigma != 0 or threshold != 0:
            raise ContractViolation("no bucket selection: its noise and threshold must be 0")
        return None
    return BucketSelection(noise_multiplier=sigma, threshold=threshold)


def declared_keys(kind: MessageKind) -> dict[str, set[str]]:
    """Record name -> declared keys of a message kind (the contract test enumerates these)."""
    out: dict[str, set[str]] = {}
    for f in CONTRACT[kind]:
        out.setdefault(f.record, set()).add(f.key)
    return out


__all__ = [
    "AGGREGATION_WEIGHT",
    "ARRAYS",
    "BUCKET_SELECTIONS",
    "CARD_FIELDS",
    "CONFIG",
    "CONTRACT",
    "DELTA",
    "EPSILON",
    "ERROR_REPLY_FIELDS",
    "MASKED",
    "MAX_AGGREGATED",
    "METRICS",
    "MODEL_CONFIG",
    "NEIGHBOUR_RELATION",
    "NOT_SENT",
    "PARTNER_ID",
    "PROXIMAL_MU",
    "REPORT",
    "RUN_ID",
    "SECAGG",
    "SECAGG_REPLY_FIELDS",
    "SECAGG_STAGE_KEYS",
    "SECURE_AGGREGATIONS",
    "SELECTION_DP_ADAFEST",
    "SERVER_ROUND",
    "SPEC_HASH",
    "TRAIN_REPLY_FIELDS",
    "ContractViolation",
    "ErrorCode",
    "ErrorReply",
    "FieldClass",
    "MessageKind",
    "Problem",
    "TrainReply",
    "WireField",
    "declared_keys",
    "node_ids_from_bytes",
    "node_ids_to_bytes",
    "parse_secagg_reply",
    "undeclared_card_fields",
]
