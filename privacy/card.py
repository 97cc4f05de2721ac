"""The model card: the platform's signed, public statement about a published model.

One schema for every side of it. The registry builds a card (:meth:`ModelCard.build`)
and signs its JSON (:meth:`ModelCard.to_json`); the scoring service serves from it and
the auditor ties it to the ledgers, both through the one parser
(:meth:`ModelCard.from_json`), which fails closed with a :class:`CardFieldError`
naming the field.

Which values a card may carry at all is the wire contract's
(:data:`fedctr.privacy.wire.CARD_FIELDS`): :meth:`ModelCard.build` refuses an
undeclared value, and the audit reports each one it finds in a published card. The
parser reads what this schema models and leaves that question to the contract, so
an authentic card that overshares is still read, and reported. For a card the
registry wrote, ``from_json(card).to_json() == card``.

On disk a version directory holds ``card.json`` (this JSON, sorted keys),
``card.sig`` (an Ed25519 signature over ``canonical_json(card)``) and
``model.safetensors``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, TypeVar

from fedctr.models.spec import FeatureSpec
from fedctr.privacy.budget import ACCOUNTANT_KINDS
from fedctr.privacy.errors import PrivacyError
from fedctr.privacy.unit import PRIVACY_UNITS
from fedctr.privacy.wire import BUCKET_SELECTIONS, NEIGHBOUR_RELATION, undeclared_card_fields
from fedctr.validate import IDENTIFIER, SHA256_HEX, Checker

CARD_FORMAT = "fedctr-model-card"
CARD_FORMAT_VERSION = 2  # 2: only values fedctr.privacy.wire.CARD_FIELDS declares
CARD_FILE = "card.json"
SIGNATURE_FILE = "card.sig"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_FORMAT = "safetensors"
SIGNING_ALGORITHM = "ed25519"

FallbackMethod = Literal["mask-user-scope"]
FALLBACK_METHODS: tuple[FallbackMethod, ...] = ("mask-user-scope",)

# A stated sentence (unit of privacy, neighbour relation): printable ASCII, one line.
_STATEMENT = re.compile(r"[\x20-\x7e]{1,200}")

T = TypeVar("T")


class ModelCardError(PrivacyError, ValueError):
    """A model card does not follow the card schema."""


class CardFormatError(ModelCardError):
    """Not a fedctr model card, or an authentic one this fedctr cannot read (its format
    version, feature spec or model config)."""


class CardFieldError(ModelCardError):
    """A card field is missing, of the wrong type, out of range or undeclared; the
    message names the field."""


_CHECK = Checker(CardFieldError)


def _json_object(value: Any, name: str) -> dict[str, Any]:
    """A free-form section (metrics, training, model, spec), copied: a JSON object with
    finite numbers only, so what is signed is what was checked."""
    if not isinstance(value, Mapping):
        _CHECK.fail(f"{name} must be a JSON object, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CardFieldError(f"{name} must be JSON with finite numbers: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class PartnerProvenance:
    """One partner's privacy statement, as the partner reported it for this model."""

    partner_id: str
    epsilon: float
    delta: float
    accountant: str
    unit_of_privacy: str
    dp_implementation: str
    rounds_contributed: int
    max_rows_per_unit: int = 1
    # "dp-adafest" when the partner's DP-SGD restricted each step to DP-selected
    # embedding rows (fedctr.privacy.dpsgd.bucket_selection), else "none"
    bucket_selection: str = "none"
    # "distributed" when the partner added Skellam noise shares under secure aggregation
    # (epsilon is then against the platform and the public); written only then
    noise: str = "local"

    def __post_init__(self) -> None:
        _CHECK.text(self.partner_id, "privacy.partners[].partner_id", IDENTIFIER)
        check = _CHECK.at(f"privacy.partners[{self.partner_id}]")
        check.non_negative(self.epsilon, "epsilon")
        if not 0 < check.number(self.delta, "delta") < 1:
            check.fail(f"delta must be in (0, 1), got {self.delta}")
        check.choice(self.accountant, "accountant", ACCOUNTANT_KINDS)
        check.choice(self.unit_of_privacy, "unit_of_privacy", PRIVACY_UNITS)
        check.integer(self.max_rows_per_unit, "max_rows_per_unit", minimum=1)
        check.choice(self.bucket_selection, "bucket_selection", BUCKET_SELECTIONS)
        check.choice(self.noise, "noise", ("local", "distributed"))
        check.text(self.dp_implementation, "dp_implementation", IDENTIFIER)
        check.integer(self.rounds_contributed, "rounds_contributed")


@dataclass(frozen=True, kw_only=True)
class EmpiricalAuditStatement:
    """The release gate's finding for one declared configuration (see
    :class:`fedctr.privacy.ledger.PlatformEmpiricalAudit`, whose platform-ledger entry
    ``ledger_entry`` names): an empirical lower bound on epsilon from one canary run on
    the platform's own data, next to the epsilon claimed for that configuration."""

    partners: tuple[str, ...]
    model: str
    dp_implementation: str
    claimed_epsilon: float
    lower_bound: float
    confidence: float
    canaries: int
    ledger_entry: str
    unit_of_privacy: str = "example"

    def __post_init__(self) -> None:
        check = _CHECK.at("privacy.empirical_audits[]")
        check.choice(self.unit_of_privacy, "unit_of_privacy", PRIVACY_UNITS)
        if not isinstance(self.partners, list | tuple) or not self.partners:
            check.fail("partners must be a non-empty list of partner ids")
        object.__setattr__(self, "partners", tuple(self.partners))
        for partner in self.partners:
            check.text(partner, "partners[]", IDENTIFIER)
        check.text(self.model, "model", IDENTIFIER)
        check.text(self.dp_implementation, "dp_implementation", IDENTIFIER)
        check.non_negative(self.claimed_epsilon, "claimed_epsilon")
        check.non_negative(self.lower_bound, "lower_bound")
        if not 0 < check.number(self.confidence, "confidence") < 1:
            check.fail(f"confidence must be in (0, 1), got {self.confidence}")
        check.integer(self.canaries, "canaries", minimum=2)
        check.text(self.ledger_entry, "ledger_entry", SHA256_HEX)

    @property
    def passed(self) -> bool:
        return self.lower_bound <= self.claimed_epsilon

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "partners": list(self.partners), "passed": self.passed}


@dataclass(frozen=True, kw_only=True)
class ServingGuard:
    """What the circuit breaker compares live traffic with.

    ``base_rate`` is the calibrated click rate served when the model misbehaves;
    the mean prediction over a sliding window must stay within
    ``[mean_prediction_low, mean_prediction_high]``.
    """

    base_rate: float
    mean_prediction_low: float
    mean_prediction_high: float

    def __post_init__(self) -> None:
        check = _CHECK.at("serving")
        if not 0 < check.number(self.base_rate, "base_rate") < 1:
            check.fail(f"base_rate must be in (0, 1), got {self.base_rate}")
        low = check.number(self.mean_prediction_low, "mean_prediction_low")
        high = check.number(self.mean_prediction_high, "mean_prediction_high")
        if not 0 <= low <= high <= 1:
            check.fail(f"prediction band must satisfy 0 <= low <= high <= 1, got [{low}, {high}]")


@dataclass(frozen=True, kw_only=True)
class ContextFallback:
    """How a ``personalized=false`` request is scored.

    ``mask-user-scope``: the same model, with every user-scope feature set to
    "missing" (bucket 0, the numeric ``fill``, a zero vector), then shifted by
    ``logit_shift`` (0 unless the publisher measured the masked model's bias in
    federated evaluation). The platform never sees raw rows, so it cannot fit a
    separate context-only model itself.
    """

    method: FallbackMethod = "mask-user-scope"
    logit_shift: float = 0.0

    def __post_init__(self) -> None:
        check = _CHECK.at("serving.non_personalized")
        check.choice(self.method, "method", FALLBACK_METHODS)
        check.number(self.logit_shift, "logit_shift")


@dataclass(frozen=True, kw_only=True)
class ModelCardFields:
    """What the publisher knows about a model and the registry cannot derive."""

    run_id: str
    rounds: int
    partners: tuple[PartnerProvenance, ...]
    metrics: Mapping[str, Any]
    training: Mapping[str, Any]
    serving: ServingGuard
    fallback: ContextFallback = field(default_factory=ContextFallback)
    # None: the platform did not run the empirical release gate for this model.
    empirical_audits: tuple[EmpiricalAuditStatement, ...] | None = None

    def __post_init__(self) -> None:
        _CHECK.text(self.run_id, "run_id", IDENTIFIER)
        if self.empirical_audits is not None:
            object.__setattr__(self, "empirical_audits", tuple(self.empirical_audits))
            if not all(isinstance(a, EmpiricalAuditStatement) for a in self.empirical_audits):
                _CHECK.fail("empirical_audits must be EmpiricalAuditStatement instances")
        _CHECK.integer(self.rounds, "rounds")
        if not isinstance(self.partners, list | tuple):
            _CHECK.fail("privacy.partners must be a list of partner statements")
        object.__setattr__(self, "partners", tuple(self.partners))
        if not all(isinstance(p, PartnerProvenance) for p in self.partners):
            _CHECK.fail("partners must be PartnerProvenance instances")
        ids = [p.partner_id for p in self.partners]
        if len(set(ids)) != len(ids):
            _CHECK.fail(f"privacy.partners: partner ids must be unique, got {ids}")
        object.__setattr__(self, "metrics", _json_object(self.metrics, "metrics"))
        object.__setattr__(self, "training", _json_object(self.training, "training"))
        if not isinstance(self.serving, ServingGuard):
            _CHECK.fail("serving must be a ServingGuard")
        if not isinstance(self.fallback, ContextFallback):
            _CHECK.fail("fallback must be a ContextFallback")


@dataclass(frozen=True, kw_only=True)
class ModelCard(ModelCardFields):
    """A published model's card: the publisher's fields and what the registry knows.

    The free-form sections (``metrics``, ``training``, ``model_config``,
    ``feature_spec``) are plain JSON objects; the contract limits their leaves.
    """

    model_version: str
    created_at: datetime
    weights_sha256: str
    spec_hash: str
    feature_spec: Mapping[str, Any]
    model_config: Mapping[str, Any]
    user_columns: tuple[str, ...]
    signing_key_id: str
    neighbour_relation: str = NEIGHBOUR_RELATION

    def __post_init__(self) -> None:
        super().__post_init__()
        _CHECK.text(self.model_version, "model_version", IDENTIFIER)
        if not isinstance(self.created_at, datetime):
            _CHECK.fail(f"created_at must be a datetime, got {type(self.created_at).__name__}")
        _CHECK.text(self.weights_sha256, "weights.sha256", SHA256_HEX)
        _CHECK.text(self.spec_hash, "feature_spec.hash", SHA256_HEX)
        object.__setattr__(
            self, "feature_spec", _json_object(self.feature_spec, "feature_spec.spec")
        )
        object.__setattr__(self, "model_config", _json_object(self.model_config, "model"))
        _CHECK.text(self.model_config.get("name"), "model.name", IDENTIFIER)
        if not isinstance(self.user_columns, list | tuple):
            _CHECK.fail("serving.non_personalized.user_columns must be a list of column names")
        object.__setattr__(self, "user_columns", tuple(self.user_columns))
        for column in self.user_columns:
            _CHECK.text(column, "serving.non_personalized.user_columns[]", IDENTIFIER)
        _CHECK.text(self.signing_key_id, "signing.key_id", IDENTIFIER)
        _CHECK.text(self.neighbour_relation, "privacy.neighbour_relation", _STATEMENT)

    @property
    def model_name(self) -> str:
        """The registered model type (``model.name``) the weights belong to."""
        return str(self.model_config["name"])

    @classmethod
    def build(
        cls,
        publisher: ModelCardFields,
        *,
        model_version: str,
        created_at: datetime,
        weights_sha256: str,
        spec: FeatureSpec,
        model_config: Mapping[str, Any],
        signing_key_id: str,
    ) -> ModelCard:
        """The card the registry signs: ``publisher``'s fields and the registry's facts.

        Refuses a card that would publish a value the wire contract does not declare:
        the card is public.
        """
        card = cls(
            **{f.name: getattr(publisher, f.name) for f in fields(ModelCardFields)},
            model_version=model_version,
            created_at=created_at,
            weights_sha256=weights_sha256,
            spec_hash=spec.spec_hash,
            feature_spec=spec.to_dict(),
            model_config=model_config,
            user_columns=tuple(
                f.name
                for f in (*spec.categorical, *spec.numeric, *spec.embedding)
                if f.scope == "user"
            ),
            signing_key_id=signing_key_id,
        )
        undeclared = undeclared_card_fields(card.to_json())
        if undeclared:
            raise CardFieldError(f"the card would publish undeclared values: {undeclared}")
        return card

    def to_json(self) -> dict[str, Any]:
        """The card as JSON types (a fresh copy): what ``card.json`` holds and is signed."""
        return {
            "format": CARD_FORMAT,
            "format_version": CARD_FORMAT_VERSION,
            "model_version": self.model_version,
            "created_at": self.created_at.isoformat(),
            "run_id": self.run_id,
            "rounds": self.rounds,
            "weights": {
                "file": WEIGHTS_FILE,
                "format": WEIGHTS_FORMAT,
                "sha256": self.weights_sha256,
            },
            "feature_spec": {"hash": self.spec_hash, "spec": copy.deepcopy(self.feature_spec)},
            "model": copy.deepcopy(self.model_config),
            "privacy": {
                "neighbour_relation": self.neighbour_relation,
                "num_partners": len(self.partners),
                "partners": [_partner_json(p) for p in self.partners],
                **(
                    {}
                    if self.empirical_audits is None
                    else {"empirical_audits": [a.to_json() for a in self.empirical_audits]}
                ),
            },
            "metrics": copy.deepcopy(self.metrics),
            "training": copy.deepcopy(self.training),
            "serving": {
                **asdict(self.serving),
                "non_personalized": {
                    **asdict(self.fallback),
                    "user_columns": list(self.user_columns),
                },
            },
            "signing": {"algorithm": SIGNING_ALGORITHM, "key_id": self.signing_key_id},
        }

    @classmethod
    def from_json(cls, data: Any) -> ModelCard:
        """Parse an (authentic) card: :class:`CardFormatError` if it is not a card of this
        format version, else :class:`CardFieldError` naming the first field that is
        missing, ill-typed or out of range. Keys the schema does not model are not read."""
        card = _envelope(data)
        privacy = _section(card, "privacy")
        raw_partners = _field(privacy, "partners", "privacy")
        if not isinstance(raw_partners, list):
            _CHECK.fail("privacy.partners must be a list")
        partners = tuple(
            _from_keys(PartnerProvenance, p, f"privacy.partners[{i}]", optional={"noise"})
            for i, p in enumerate(raw_partners)
        )
        num_partners = _field(privacy, "num_partners", "privacy")
        if _CHECK.integer(num_partners, "privacy.num_partners") != len(partners):
            _CHECK.fail(f"privacy.num_partners is {num_partners} but {len(partners)} are listed")
        empirical = None
        if "empirical_audits" in privacy:
            raw_audits = privacy["empirical_audits"]
            if not isinstance(raw_audits, list):
                _CHECK.fail("privacy.empirical_audits must be a list")
            empirical = tuple(
                _from_keys(EmpiricalAuditStatement, a, f"privacy.empirical_audits[{i}]")
                for i, a in enumerate(raw_audits)
            )
        weights = _section(card, "weights")
        _fixed(weights, "file", "weights", WEIGHTS_FILE)
        _fixed(weights, "format", "weights", WEIGHTS_FORMAT)
        spec = _section(card, "feature_spec")
        serving = _section(card, "serving")
        non_personalized = _section(serving, "non_personalized", "serving")
        signing = _section(card, "signing")
        _fixed(signing, "algorithm", "signing", SIGNING_ALGORITHM)
        return cls(
            model_version=_field(card, "model_version"),
            created_at=_timestamp(_field(card, "created_at")),
            run_id=_field(card, "run_id"),
            rounds=_field(card, "rounds"),
            weights_sha256=_field(weights, "sha256", "weights"),
            spec_hash=_field(spec, "hash", "feature_spec"),
            feature_spec=_field(spec, "spec", "feature_spec"),
            model_config=_field(card, "model"),
            neighbour_relation=_field(privacy, "neighbour_relation", "privacy"),
            partners=partners,
            empirical_audits=empirical,
            metrics=_field(card, "metrics"),
            training=_field(card, "training"),
            serving=_from_keys(ServingGuard, serving, "serving"),
            fallback=_from_keys(ContextFallback, non_personalized, "serving.non_personalized"),
            user_columns=_field(non_personalized, "user_columns", "serving.non_personalized"),
            signing_key_id=_field(signing, "key_id", "signing"),
        )


# ---- parsing -------------------------------------------------------------------------
def _envelope(data: Any) -> Mapping[str, Any]:
    """The card's format and version, checked before anything else is read."""
    if not isinstance(data, Mapping) or data.get("format") != CARD_FORMAT:
        raise CardFormatError("not a fedctr model card")
    if data.get("format_version") != CARD_FORMAT_VERSION:
        raise CardFormatError(
            f"model card format_version {data.get('format_version')!r} is not supported "
            f"(this fedctr reads {CARD_FORMAT_VERSION}); upgrade fedctr"
        )
    return data


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _field(raw: Mapping[str, Any], key: str, where: str = "") -> Any:
    if key not in raw:
        _CHECK.fail(f"model card lacks {_path(where, key)}")
    return raw[key]


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _CHECK.fail(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _section(raw: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    return _object(_field(raw, key, where), _path(where, key))


def _fixed(raw: Mapping[str, Any], key: str, where: str, expected: str) -> None:
    _CHECK.choice(_field(raw, key, where), _path(where, key), (expected,))


def _from_keys(cls: type[T], raw: Any, where: str, optional: set[str] = frozenset()) -> T:  # type: ignore[assignment]
    """``cls`` from the keys of the section ``raw`` that are named like its fields
    (a field in ``optional`` may be absent: it keeps its default)."""
    section = _object(raw, where)
    return cls(
        **{  # type: ignore[arg-type]
            f.name: _field(section, f.name, where)
            for f in fields(cls)
            if f.name not in optional or f.name in section
        }
    )


def _partner_json(partner: PartnerProvenance) -> dict[str, Any]:
    """A partner's card entry; ``noise`` only when distributed, so a local partner's
    entry is what it was before distributed noise existed."""
    out = asdict(partner)
    if partner.noise == "local":
        del out["noise"]
    return out


def _timestamp(value: Any) -> datetime:
    """``created_at``: ISO 8601 exactly as ``datetime.isoformat`` writes it, so the
    parsed card writes back the signed text."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.isoformat() != value:
        _CHECK.fail(
            f"created_at must be an ISO 8601 date and time as datetime.isoformat writes "
            f"it, got {value!r:.60}"
        )
    return parsed


__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CARD_FORMAT_VERSION",
    "FALLBACK_METHODS",
    "SIGNATURE_FILE",
    "SIGNING_ALGORITHM",
    "WEIGHTS_FILE",
    "WEIGHTS_FORMAT",
    "CardFieldError",
    "CardFormatError",
    "ContextFallback",
    "EmpiricalAuditStatement",
    "FallbackMethod",
    "ModelCard",
    "ModelCardError",
    "ModelCardFields",
    "PartnerProvenance",
    "ServingGuard",
]
