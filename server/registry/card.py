"""The model card: what a published model is, where it came from, how to serve it.

The publisher fills :class:`ModelCardFields`; :func:`build_card` adds what the
registry itself knows (version, weights hash, feature spec, model config) and
returns the plain JSON dict that gets signed. Readers get that dict back only
after its signature verified, and pull typed views out with the ``*_from_card``
helpers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from fedctr.models.spec import FeatureSpec
from fedctr.privacy.budget import ACCOUNTANT_KINDS
from fedctr.privacy.wire import NEIGHBOUR_RELATION, undeclared_card_fields
from fedctr.server.registry.errors import CardFieldError, CardFormatError

CARD_FORMAT = "fedctr-model-card"
CARD_FORMAT_VERSION = 2  # 2: only values fedctr.privacy.wire.CARD_FIELDS declares
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
SIGNATURE_FILE = "card.sig"

FallbackMethod = Literal["mask-user-scope"]


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CardFieldError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CardFieldError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CardFieldError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _json_object(name: str, value: Any) -> dict[str, Any]:
    """A free-form section (metrics, training summary): JSON with finite numbers only."""
    if not isinstance(value, Mapping):
        raise CardFieldError(f"{name} must be a mapping, got {type(value).__name__}")
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

    def __post_init__(self) -> None:
        _text("partner_id", self.partner_id)
        if _real(f"partner {self.partner_id} epsilon", self.epsilon) < 0:
            raise CardFieldError(f"partner {self.partner_id} epsilon must be >= 0")
        if not 0 < _real(f"partner {self.partner_id} delta", self.delta) < 1:
            raise CardFieldError(f"partner {self.partner_id} delta must be in (0, 1)")
        if self.accountant not in ACCOUNTANT_KINDS:
            raise CardFieldError(
                f"partner {self.partner_id} accountant must be one of {ACCOUNTANT_KINDS}, "
                f"got {self.accountant!r}"
            )
        _text(f"partner {self.partner_id} unit_of_privacy", self.unit_of_privacy)
        _text(f"partner {self.partner_id} dp_implementation", self.dp_implementation)
        _count(f"partner {self.partner_id} rounds_contributed", self.rounds_contributed)


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
        if not 0 < _real("base_rate", self.base_rate) < 1:
            raise CardFieldError(f"base_rate must be in (0, 1), got {self.base_rate}")
        low = _real("mean_prediction_low", self.mean_prediction_low)
        high = _real("mean_prediction_high", self.mean_prediction_high)
        if not 0 <= low <= high <= 1:
            raise CardFieldError(
                f"prediction band must satisfy 0 <= low <= high <= 1, got [{low}, {high}]"
            )


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
        if self.method != "mask-user-scope":
            raise CardFieldError(f"unknown fallback method {self.method!r}")
        _real("logit_shift", self.logit_shift)


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

    def __post_init__(self) -> None:
        _text("run_id", self.run_id)
        _count("rounds", self.rounds)
        object.__setattr__(self, "partners", tuple(self.partners))
        if not all(isinstance(p, PartnerProvenance) for p in self.partners):
            raise CardFieldError("partners must be PartnerProvenance instances")
        ids = [p.partner_id for p in self.partners]
        if len(set(ids)) != len(ids):
            raise CardFieldError(f"partner ids must be unique, got {ids}")
        object.__setattr__(self, "metrics", _json_object("metrics", self.metrics))
        object.__setattr__(self, "training", _json_object("training", self.training))
        if not isinstance(self.serving, ServingGuard):
            raise CardFieldError("serving must be a ServingGuard")
        if not isinstance(self.fallback, ContextFallback):
            raise CardFieldError("fallback must be a ContextFallback")


def build_card(
    *,
    fields: ModelCardFields,
    model_version: str,
    created_at: datetime,
    weights_sha256: str,
    spec: FeatureSpec,
    model_config: dict[str, Any],
    signing_key_id: str,
) -> dict[str, Any]:
    """The card dict that gets signed (JSON types only); refuses undeclared values."""
    user_columns = [
        f.name for f in (*spec.categorical, *spec.numeric, *spec.embedding) if f.scope == "user"
    ]
    card = {
        "format": CARD_FORMAT,
        "format_version": CARD_FORMAT_VERSION,
        "model_version": model_version,
        "created_at": created_at.isoformat(),
        "run_id": fields.run_id,
        "rounds": fields.rounds,
        "weights": {"file": WEIGHTS_FILE, "format": "safetensors", "sha256": weights_sha256},
        "feature_spec": {"hash": spec.spec_hash, "spec": spec.to_dict()},
        "model": model_config,
        "privacy": {
            "neighbour_relation": NEIGHBOUR_RELATION,
            "num_partners": len(fields.partners),
            "partners": [asdict(p) for p in fields.partners],
        },
        "metrics": dict(fields.metrics),
        "training": dict(fields.training),
        "serving": {
            **asdict(fields.serving),
            "non_personalized": {**asdict(fields.fallback), "user_columns": user_columns},
        },
        "signing": {"algorithm": "ed25519", "key_id": signing_key_id},
    }
    undeclared = undeclared_card_fields(card)
    if undeclared:  # the card is public: publish nothing the wire contract does not declare
        raise CardFieldError(f"the card would publish undeclared values: {undeclared}")
    return card


def check_card_format(card: Any) -> dict[str, Any]:
    """Check the envelope of an (authentic) card before anything else reads it."""
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CardFormatError("not a fedctr model card")
    if card.get("format_version") != CARD_FORMAT_VERSION:
        raise CardFormatError(
            f"model card format_version {card.get('format_version')!r} is not supported "
            f"(this fedctr reads {CARD_FORMAT_VERSION}); upgrade fedctr"
        )
    for key in ("model_version", "weights", "feature_spec", "model", "serving", "privacy"):
        if key not in card:
            raise CardFormatError(f"model card lacks '{key}'")
    return card


def serving_guard_from_card(card: dict[str, Any]) -> ServingGuard:
    """Typed circuit-breaker settings of a verified card."""
    s = card["serving"]
    try:
        return ServingGuard(
            base_rate=s["base_rate"],
            mean_prediction_low=s["mean_prediction_low"],
            mean_prediction_high=s["mean_prediction_high"],
        )
    except (KeyError, TypeError, CardFieldError) as exc:
        raise CardFormatError(f"model card 'serving' section is invalid: {exc}") from exc


def fallback_from_card(card: dict[str, Any]) -> ContextFallback:
    """Typed non-personalised fallback of a verified card."""
    raw = card["serving"].get("non_personalized", {})
    try:
        return ContextFallback(method=raw["method"], logit_shift=raw.get("logit_shift", 0.0))
    except (KeyError, TypeError, CardFieldError) as exc:
        raise CardFormatError(f"model card 'non_personalized' section is invalid: {exc}") from exc


__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CARD_FORMAT_VERSION",
    "SIGNATURE_FILE",
    "WEIGHTS_FILE",
    "ContextFallback",
    "ModelCardFields",
    "PartnerProvenance",
    "ServingGuard",
    "build_card",
    "check_card_format",
    "fallback_from_card",
    "serving_guard_from_card",
]
