"""What a ledger entry says: one frozen dataclass per kind of entry.

Bodies are read back from disk and from other parties, so ``from_dict`` parses
untrusted input field by field: exact key sets, no bool for a number, no NaN/inf,
hashes as 64 lowercase hex characters. Mechanism and budget reuse the types the
training-time budget check uses, so what was approved is what gets recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from fedctr.privacy.budget import (
    ACCOUNTANT_KINDS,
    AccountantKind,
    BucketSelection,
    DistributedNoise,
    DPSGDRound,
    PrivacyBudget,
)
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.ledger.errors import LedgerEntryInvalid
from fedctr.privacy.unit import UnitOfPrivacy
from fedctr.validate import IDENTIFIER, SHA256_HEX, Checker

EntryKind = Literal[
    "partner-release",
    "partner-withheld",
    "platform-report",
    "platform-publish",
    "platform-empirical-audit",
]
ENTRY_KINDS: tuple[str, ...] = (
    "partner-release",
    "partner-withheld",
    "platform-report",
    "platform-publish",
    "platform-empirical-audit",
)

_TEXT = re.compile(r"[\x20-\x7e]{1,128}")
_CHECK = Checker(LedgerEntryInvalid)


# ---- field parsers -------------------------------------------------------------
def _fields(
    data: Any, what: str, keys: frozenset[str], optional: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise LedgerEntryInvalid(f"{what} must be a JSON object, got {type(data).__name__}")
    missing = keys - optional - data.keys()
    extra = data.keys() - keys
    if missing or extra:
        raise LedgerEntryInvalid(
            f"{what}: missing fields {sorted(missing)}, unknown fields {sorted(map(str, extra))}"
        )
    return data


def _hash(data: Mapping[str, Any], name: str) -> str:
    return _CHECK.text(data[name], name, SHA256_HEX)


def ident(value: Any, name: str = "identifier") -> str:
    """Check a partner/run/owner identifier: 1-64 of ``[A-Za-z0-9_.-]``, safe as a file name."""
    return _CHECK.text(value, name, IDENTIFIER)


def _delta(data: Mapping[str, Any], name: str = "delta") -> float:
    value = _CHECK.number(data[name], name)
    if not 0 < value < 1:
        raise LedgerEntryInvalid(f"{name} must be in (0, 1), got {value}")
    return value


def _epsilon(data: Mapping[str, Any], name: str) -> float:
    value = _CHECK.number(data[name], name)
    if value < 0:
        raise LedgerEntryInvalid(f"{name} must be >= 0, got {value}")
    return value


_MECHANISM_KEYS = frozenset(
    {"noise_multiplier", "max_grad_norm", "sample_rate", "sampling", "steps", "selection"}
)
_SELECTION_KEYS = frozenset({"noise_multiplier", "threshold"})


def parse_mechanism(data: Any) -> DPSGDRound:
    """A recorded DP-SGD round: subsampled Gaussian, Poisson sampling, ``steps`` steps."""
    data = _fields(data, "mechanism", _MECHANISM_KEYS | {"distributed"}, frozenset({"distributed"}))
    if data["sampling"] != "poisson":
        raise LedgerEntryInvalid(f"mechanism.sampling must be 'poisson', got {data['sampling']!r}")
    try:
        selection = None
        if data["selection"] is not None:
            raw = _fields(data["selection"], "mechanism.selection", _SELECTION_KEYS)
            selection = BucketSelection(
                noise_multiplier=_CHECK.number(raw["noise_multiplier"], "noise_multiplier"),
                threshold=_CHECK.number(raw["threshold"], "threshold"),
            )
        return DPSGDRound(
            noise_multiplier=_CHECK.number(data["noise_multiplier"], "noise_multiplier"),
            max_grad_norm=_CHECK.number(data["max_grad_norm"], "max_grad_norm"),
            sample_rate=_CHECK.number(data["sample_rate"], "sample_rate"),
            steps=_CHECK.integer(data["steps"], "steps", minimum=0),
            selection=selection,
            distributed=_distributed(data.get("distributed")),
        )
    except InvalidPrivacyParameter as exc:
        raise LedgerEntryInvalid(f"mechanism: {exc}") from exc


def _distributed(raw: Any) -> DistributedNoise | None:
    if raw is None:
        return None
    raw = _fields(raw, "mechanism.distributed", _DISTRIBUTED_KEYS)
    return DistributedNoise(
        min_shares=_CHECK.integer(raw["min_shares"], "min_shares", minimum=1),
        l2_sensitivity=_CHECK.number(raw["l2_sensitivity"], "l2_sensitivity"),
        l1_sensitivity=_CHECK.number(raw["l1_sensitivity"], "l1_sensitivity"),
    )


_DISTRIBUTED_KEYS = frozenset({"min_shares", "l2_sensitivity", "l1_sensitivity"})


def parse_unit(data: Mapping[str, Any]) -> UnitOfPrivacy:
    """``unit_of_privacy`` and ``max_rows_per_unit`` of a body (example: 1 row)."""
    try:
        return UnitOfPrivacy(
            data["unit_of_privacy"],
            _CHECK.integer(data["max_rows_per_unit"], "max_rows_per_unit", minimum=1),
        )
    except InvalidPrivacyParameter as exc:
        raise LedgerEntryInvalid(str(exc)) from exc


def parse_budget(data: Any) -> PrivacyBudget:
    data = _fields(data, "budget", frozenset({"epsilon", "delta"}))
    try:
        return PrivacyBudget(
            epsilon=_CHECK.number(data["epsilon"], "epsilon"),
            delta=_CHECK.number(data["delta"], "delta"),
        )
    except InvalidPrivacyParameter as exc:
        raise LedgerEntryInvalid(f"budget: {exc}") from exc


def mechanism_dict(mechanism: DPSGDRound) -> dict[str, Any]:
    """The ledger's form; ``distributed`` appears only for a distributed release, so a
    local release's entry is byte for byte what it was before that mode existed."""
    out = {
        "noise_multiplier": mechanism.noise_multiplier,
        "max_grad_norm": mechanism.max_grad_norm,
        "sample_rate": mechanism.sample_rate,
        "sampling": mechanism.sampling,
        "steps": mechanism.steps,
        "selection": (
            None
            if mechanism.selection is None
            else {
                "noise_multiplier": mechanism.selection.noise_multiplier,
                "threshold": mechanism.selection.threshold,
            }
        ),
    }
    if mechanism.distributed is not None:
        out["distributed"] = {
            "min_shares": mechanism.distributed.min_shares,
            "l2_sensitivity": mechanism.distributed.l2_sensitivity,
            "l1_sensitivity": mechanism.distributed.l1_sensitivity,
        }
    return out


# ---- bodies ----------------------------------------------------------------------
def _validate(body: Any, values: Any) -> None:
    """Run the untrusted-input parser over a body built in code, so both paths agree."""
    try:
        data = body.to_dict()
    except AttributeError as exc:
        raise TypeError(f"{type(body).__name__}: a nested field has the wrong type") from exc
    values(data)


def _spend_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a release and a withheld spend share: whose round, what it cost."""
    unit = parse_unit(data)
    return {
        "run_id": ident(data["run_id"], "run_id"),
        "round": _CHECK.integer(data["round"], "round", minimum=1),
        "partner_id": ident(data["partner_id"], "partner_id"),
        "mechanism": parse_mechanism(data["mechanism"]),
        "accountant": _CHECK.choice(data["accountant"], "accountant", ACCOUNTANT_KINDS),
        "dp_implementation": _CHECK.text(data["dp_implementation"], "dp_implementation", _TEXT),
        "unit_of_privacy": unit.kind.value,
        "max_rows_per_unit": unit.max_rows,
        "epsilon_after": _epsilon(data, "epsilon_after"),
        "delta": _delta(data),
        "budget": parse_budget(data["budget"]),
    }


def _spend_dict(body: PartnerRelease | PartnerWithheld) -> dict[str, Any]:
    return {
        "run_id": body.run_id,
        "round": body.round,
        "partner_id": body.partner_id,
        "mechanism": mechanism_dict(body.mechanism),
        "accountant": body.accountant,
        "dp_implementation": body.dp_implementation,
        "unit_of_privacy": body.unit_of_privacy,
        "max_rows_per_unit": body.max_rows_per_unit,
        "epsilon_after": body.epsilon_after,
        "delta": body.delta,
        "budget": {"epsilon": body.budget.epsilon, "delta": body.budget.delta},
    }


def _release_values(data: Any) -> dict[str, Any]:
    data = _fields(data, "partner-release", _RELEASE_KEYS, _SECAGG_KEYS)
    out = {
        **_spend_values(data),
        "base_model_hash": _hash(data, "base_model_hash"),
        "update_hash": _hash(data, "update_hash"),
    }
    if "secure_aggregation" in data or "secagg_session" in data:
        if data.get("secure_aggregation") != "secagg+":
            raise LedgerEntryInvalid("partner-release: secure_aggregation must be 'secagg+'")
        out["secure_aggregation"] = "secagg+"
        out["secagg_session"] = _CHECK.text(data.get("secagg_session"), "secagg_session", _SESSION)
    return out


_SECAGG_KEYS = frozenset({"secure_aggregation", "secagg_session"})
_SESSION = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, kw_only=True)
class PartnerRelease:
    """One DP release by a partner: the update it sent in one round, and what it cost.

    The signed entry travels to the platform with the update, so it holds only what
    the wire contract (:mod:`fedctr.privacy.wire`) declares: no row counts.

    ``epsilon_after`` is cumulative over every release in this partner's ledger,
    at ``delta``, by the training-time ``accountant``, for one ``unit_of_privacy``
    (``example`` or ``user``: the mechanism's rate samples that unit, with at most
    ``max_rows_per_unit`` rows each); ``mechanism.steps`` are the steps the optimizer
    actually took.
    """

    KIND: ClassVar[EntryKind] = "partner-release"

    run_id: str
    round: int
    partner_id: str
    base_model_hash: str
    update_hash: str
    mechanism: DPSGDRound
    accountant: AccountantKind
    dp_implementation: str
    unit_of_privacy: str  # fedctr.privacy.unit.PrivacyUnit value
    epsilon_after: float
    delta: float
    budget: PrivacyBudget
    max_rows_per_unit: int = 1
    secure_aggregation: str = "none"  # or "secagg+": update_hash commits to the masked input
    secagg_session: str = ""

    def __post_init__(self) -> None:
        _validate(self, _release_values)

    @property
    def unit(self) -> UnitOfPrivacy:
        return UnitOfPrivacy(self.unit_of_privacy, self.max_rows_per_unit)

    def to_dict(self) -> dict[str, Any]:
        out = {
            **_spend_dict(self),
            "base_model_hash": self.base_model_hash,
            "update_hash": self.update_hash,
        }
        if self.secure_aggregation != "none" or self.secagg_session:
            # Absent for plain releases, so entries written before secure aggregation
            # existed keep their exact bytes (and signatures).
            out["secure_aggregation"] = self.secure_aggregation
            out["secagg_session"] = self.secagg_session
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PartnerRelease:
        return cls(**_release_values(data))


def _withheld_values(data: Any) -> dict[str, Any]:
    data = _fields(data, "partner-withheld", _WITHHELD_KEYS)
    return {
        **_spend_values(data),
        "reason": _CHECK.choice(data["reason"], "reason", WITHHELD_REASONS),
    }


WITHHELD_REASONS = ("stopped-while-training", "stopped-before-release")


@dataclass(frozen=True, kw_only=True)
class PartnerWithheld:
    """A round whose noise was drawn but whose update never left the node.

    The node stopped (killed, rebooted) while training, or after training and before
    the release's entry was written. Nothing was released, but the spend is counted
    anyway, as if it had been: an interrupted round can never be a free retry, and the
    auditor sees it. ``mechanism.steps`` is what was planned (stopped while training) or
    taken (stopped after), so the count is never lower than what happened.
    """

    KIND: ClassVar[EntryKind] = "partner-withheld"

    run_id: str
    round: int
    partner_id: str
    mechanism: DPSGDRound
    accountant: AccountantKind
    dp_implementation: str
    unit_of_privacy: str
    epsilon_after: float
    delta: float
    budget: PrivacyBudget
    reason: str
    max_rows_per_unit: int = 1

    def __post_init__(self) -> None:
        _validate(self, _withheld_values)

    @property
    def unit(self) -> UnitOfPrivacy:
        return UnitOfPrivacy(self.unit_of_privacy, self.max_rows_per_unit)

    def to_dict(self) -> dict[str, Any]:
        return {**_spend_dict(self), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Any) -> PartnerWithheld:
        return cls(**_withheld_values(data))


def _report_values(data: Any) -> dict[str, Any]:
    data = _fields(data, "platform-report", _REPORT_KEYS)
    if not isinstance(data["accepted"], bool):
        raise LedgerEntryInvalid("accepted must be true or false")
    unit = parse_unit(data)
    return {
        "run_id": ident(data["run_id"], "run_id"),
        "round": _CHECK.integer(data["round"], "round", minimum=1),
        "partner_id": ident(data["partner_id"], "partner_id"),
        "partner_entry_hash": _hash(data, "partner_entry_hash"),
        "epsilon_after": _epsilon(data, "epsilon_after"),
        "delta": _delta(data),
        "update_hash": _hash(data, "update_hash"),
        "accountant": _CHECK.choice(data["accountant"], "accountant", ACCOUNTANT_KINDS),
        "mechanism": parse_mechanism(data["mechanism"]),
        "accepted": data["accepted"],
        "unit_of_privacy": unit.kind.value,
        "max_rows_per_unit": unit.max_rows,
    }


@dataclass(frozen=True, kw_only=True)
class PlatformReport:
    """What the platform received from a partner in one round (a copy of its release).

    ``partner_entry_hash`` is the hash of the partner's signed ledger entry that came
    with the update: it anchors the partner's chain in the platform's ledger, so a
    partner cannot later drop or rewrite that entry unnoticed.
    """

    KIND: ClassVar[EntryKind] = "platform-report"

    run_id: str
    round: int
    partner_id: str
    partner_entry_hash: str
    epsilon_after: float
    delta: float
    update_hash: str
    accountant: AccountantKind
    mechanism: DPSGDRound
    accepted: bool
    unit_of_privacy: str = "example"
    max_rows_per_unit: int = 1

    def __post_init__(self) -> None:
        _validate(self, _report_values)

    @classmethod
    def from_release(
        cls, release: PartnerRelease, *, partner_entry_hash: str, accepted: bool
    ) -> PlatformReport:
        """The report of ``release``, as received inside the partner's signed entry."""
        return cls(
            run_id=release.run_id,
            round=release.round,
            partner_id=release.partner_id,
            partner_entry_hash=partner_entry_hash,
            epsilon_after=release.epsilon_after,
            delta=release.delta,
            update_hash=release.update_hash,
            accountant=release.accountant,
            mechanism=release.mechanism,
            accepted=accepted,
            unit_of_privacy=release.unit_of_privacy,
            max_rows_per_unit=release.max_rows_per_unit,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "round": self.round,
            "partner_id": self.partner_id,
            "partner_entry_hash": self.partner_entry_hash,
            "epsilon_after": self.epsilon_after,
            "delta": self.delta,
            "update_hash": self.update_hash,
            "accountant": self.accountant,
            "mechanism": mechanism_dict(self.mechanism),
            "accepted": self.accepted,
            "unit_of_privacy": self.unit_of_privacy,
            "max_rows_per_unit": self.max_rows_per_unit,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PlatformReport:
        return cls(**_report_values(data))


def _publish_values(data: Any) -> dict[str, Any]:
    data = _fields(data, "platform-publish", _PUBLISH_KEYS)
    partners = data["partners"]
    if not isinstance(partners, list | tuple):
        raise LedgerEntryInvalid("partners must be a list of partner ids")
    parsed = tuple(ident(p, "partners[]") for p in partners)
    if len(set(parsed)) != len(parsed):
        raise LedgerEntryInvalid("partners must not repeat a partner id")
    return {
        "run_id": ident(data["run_id"], "run_id"),
        "model_version": _CHECK.text(data["model_version"], "model_version", _TEXT),
        "weights_sha256": _hash(data, "weights_sha256"),
        "card_sha256": _hash(data, "card_sha256"),
        "rounds": _CHECK.integer(data["rounds"], "rounds", minimum=0),
        "partners": parsed,
    }


@dataclass(frozen=True, kw_only=True)
class PlatformPublish:
    """A model the platform published: the global model after round ``rounds`` of ``run_id``.

    ``partners`` are the partners whose accepted updates went into it; ``card_sha256``
    is the SHA-256 of the model card file exactly as published.
    """

    KIND: ClassVar[EntryKind] = "platform-publish"

    run_id: str
    model_version: str
    weights_sha256: str
    card_sha256: str
    rounds: int
    partners: tuple[str, ...]

    def __post_init__(self) -> None:
        _validate(self, _publish_values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_version": self.model_version,
            "weights_sha256": self.weights_sha256,
            "card_sha256": self.card_sha256,
            "rounds": self.rounds,
            "partners": list(self.partners),
        }

    @classmethod
    def from_dict(cls, data: Any) -> PlatformPublish:
        return cls(**_publish_values(data))


def _number_list(value: Any, name: str, *, integers: bool = False) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise LedgerEntryInvalid(f"{name} must be a non-empty list")
    check = _CHECK.integer if integers else _CHECK.number
    return tuple(check(v, f"{name}[]") for v in value)


def _histogram(data: Any) -> ScoreHistogram:
    data = _fields(data, "histogram", frozenset({"edges", "included", "excluded"}))
    return ScoreHistogram(
        edges=_number_list(data["edges"], "histogram.edges"),
        included=_number_list(data["included"], "histogram.included", integers=True),
        excluded=_number_list(data["excluded"], "histogram.excluded", integers=True),
    )


@dataclass(frozen=True)
class ScoreHistogram:
    """Canary scores in bins: how many included (trained on) and excluded canaries fell
    in each; the report plots the two distributions from it."""

    edges: tuple[float, ...]
    included: tuple[int, ...]
    excluded: tuple[int, ...]

    def __post_init__(self) -> None:
        bins = len(self.edges) - 1
        if bins < 1 or len(self.included) != bins or len(self.excluded) != bins:
            raise LedgerEntryInvalid("histogram: counts must have one fewer entry than edges")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise LedgerEntryInvalid("histogram: edges must increase")

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "included": list(self.included),
            "excluded": list(self.excluded),
        }


def _empirical_values(data: Any) -> dict[str, Any]:
    data = _fields(data, "platform-empirical-audit", _EMPIRICAL_KEYS)
    unit = parse_unit(data)
    mechanisms = data["mechanisms"]
    if not isinstance(mechanisms, list | tuple) or not mechanisms:
        raise LedgerEntryInvalid("mechanisms must be a non-empty list (one per round)")
    partners = data["partners"]
    if not isinstance(partners, list | tuple) or not partners:
        raise LedgerEntryInvalid("partners must be a non-empty list of partner ids")
    confidence = _CHECK.number(data["confidence"], "confidence")
    if not 0 < confidence < 1:
        raise LedgerEntryInvalid(f"confidence must be in (0, 1), got {confidence}")
    canaries = _CHECK.integer(data["canaries"], "canaries", minimum=2)
    guesses = _CHECK.integer(data["guesses"], "guesses", minimum=0)
    correct = _CHECK.integer(data["correct"], "correct", minimum=0)
    if not correct <= guesses <= canaries:
        raise LedgerEntryInvalid("correct <= guesses <= canaries must hold")
    return {
        "run_id": ident(data["run_id"], "run_id"),
        "partners": tuple(ident(p, "partners[]") for p in partners),
        "model": ident(data["model"], "model"),
        "dp_implementation": _CHECK.text(data["dp_implementation"], "dp_implementation", _TEXT),
        "accountant": _CHECK.choice(data["accountant"], "accountant", ACCOUNTANT_KINDS),
        "unit_of_privacy": unit.kind.value,
        "max_rows_per_unit": unit.max_rows,
        "mechanisms": tuple(parse_mechanism(m) for m in mechanisms),
        "delta": _delta(data),
        "claimed_epsilon": _epsilon(data, "claimed_epsilon"),
        "lower_bound": _epsilon(data, "lower_bound"),
        "confidence": confidence,
        "canaries": canaries,
        "guesses": guesses,
        "correct": correct,
        "data_sha256": _hash(data, "data_sha256"),
        "histogram": _histogram(data["histogram"]),
    }


@dataclass(frozen=True, kw_only=True)
class PlatformEmpiricalAudit:
    """One empirical audit the platform ran before publishing (the release gate).

    The configuration a set of ``partners`` declared (``model``, ``dp_implementation``,
    ``accountant`` and the per-round ``mechanisms``) was run through the partner
    node's real training path, on the platform's *own* data (``data_sha256``: the file
    it audited with) with ``canaries`` canaries, one run (Steinke, Nasr & Jagielski
    2023). ``lower_bound`` is the empirical epsilon at ``confidence``; ``passed`` iff
    it does not exceed ``claimed_epsilon``, the accountant's epsilon for those
    mechanisms at ``delta``. A failed audit blocks the publication and stays here,
    signed, for the auditor.
    """

    KIND: ClassVar[EntryKind] = "platform-empirical-audit"

    run_id: str
    partners: tuple[str, ...]
    model: str
    dp_implementation: str
    accountant: AccountantKind
    unit_of_privacy: str
    mechanisms: tuple[DPSGDRound, ...]
    delta: float
    claimed_epsilon: float
    lower_bound: float
    confidence: float
    canaries: int
    guesses: int
    correct: int
    data_sha256: str
    histogram: ScoreHistogram
    max_rows_per_unit: int = 1

    def __post_init__(self) -> None:
        _validate(self, _empirical_values)

    @property
    def passed(self) -> bool:
        """True unless the canaries refute the claimed epsilon at ``confidence``."""
        return self.lower_bound <= self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "partners": list(self.partners),
            "model": self.model,
            "dp_implementation": self.dp_implementation,
            "accountant": self.accountant,
            "unit_of_privacy": self.unit_of_privacy,
            "max_rows_per_unit": self.max_rows_per_unit,
            "mechanisms": [mechanism_dict(m) for m in self.mechanisms],
            "delta": self.delta,
            "claimed_epsilon": self.claimed_epsilon,
            "lower_bound": self.lower_bound,
            "confidence": self.confidence,
            "canaries": self.canaries,
            "guesses": self.guesses,
            "correct": self.correct,
            "data_sha256": self.data_sha256,
            "histogram": self.histogram.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> PlatformEmpiricalAudit:
        return cls(**_empirical_values(data))


_RELEASE_KEYS = frozenset(f.name for f in fields(PartnerRelease))
_WITHHELD_KEYS = frozenset(f.name for f in fields(PartnerWithheld))
_REPORT_KEYS = frozenset(f.name for f in fields(PlatformReport))
_PUBLISH_KEYS = frozenset(f.name for f in fields(PlatformPublish))
_EMPIRICAL_KEYS = frozenset(f.name for f in fields(PlatformEmpiricalAudit))

LedgerBody = (
    PartnerRelease | PartnerWithheld | PlatformReport | PlatformPublish | PlatformEmpiricalAudit
)
BODY_TYPES: Mapping[str, type[LedgerBody]] = MappingProxyType(
    {
        cls.KIND: cls
        for cls in (
            PartnerRelease,
            PartnerWithheld,
            PlatformReport,
            PlatformPublish,
            PlatformEmpiricalAudit,
        )
    }
)


def parse_body(kind: str, data: Any) -> LedgerBody:
    """Parse the body of an entry of ``kind``; raise :class:`LedgerEntryInvalid` if malformed."""
    try:
        body_type = BODY_TYPES[kind]
    except (KeyError, TypeError) as exc:
        raise LedgerEntryInvalid(
            f"unknown entry kind {kind!r}; expected one of {ENTRY_KINDS}"
        ) from exc
    return body_type.from_dict(data)


__all__ = [
    "BODY_TYPES",
    "ENTRY_KINDS",
    "WITHHELD_REASONS",
    "EntryKind",
    "LedgerBody",
    "PartnerRelease",
    "PartnerWithheld",
    "PlatformEmpiricalAudit",
    "PlatformPublish",
    "PlatformReport",
    "ScoreHistogram",
    "ident",
    "mechanism_dict",
    "parse_body",
    "parse_budget",
    "parse_mechanism",
]
