"""The audit's side of the wire contract (:mod:`fedctr.privacy.wire`).

Two checks, and the lists the privacy statement is built from:

* every leaf of every authentic model card must be declared in
  :data:`fedctr.privacy.wire.CARD_FIELDS`; each undeclared one is a finding that names the
  path, never the value;
* ledger bodies are strict-parsed by :mod:`fedctr.privacy.ledger.bodies` (an unknown field is
  a ``schema-invalid`` finding of the integrity check). Findings embed the offending
  entry for the report, so :func:`withhold_undeclared` replaces the values of
  undeclared body fields there: the report names them, and does not repeat them.

:func:`declared_values` turns the contract into rows (what crosses which boundary,
and how it is covered), so the statement is generated from the contract and cannot
drift from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from fedctr.privacy.budget import DPSGDRound
from fedctr.privacy.ledger import BODY_TYPES, Finding, FindingCode
from fedctr.privacy.ledger.bodies import mechanism_dict
from fedctr.privacy.wire import (
    CARD_FIELDS,
    ERROR_REPLY_FIELDS,
    NOT_SENT,
    SECAGG_REPLY_FIELDS,
    TRAIN_REPLY_FIELDS,
    FieldClass,
    WireField,
    undeclared_card_fields,
)

UNDECLARED_CARD_FIELD = FindingCode.UNDECLARED_CARD_FIELD
WITHHELD = "<undeclared value withheld by the audit>"


# ---- model cards -------------------------------------------------------------------------
def card_contract_findings(card: Mapping[str, Any], *, source: str) -> list[Finding]:
    """One finding per leaf path of ``card`` that :data:`~fedctr.privacy.wire.CARD_FIELDS`
    does not declare."""
    return [
        Finding(
            code=UNDECLARED_CARD_FIELD,
            source=source,
            message=(
                f"the card publishes {path!r}, which the wire contract (fedctr.privacy.wire."
                "CARD_FIELDS) does not declare: no value may leave the platform undeclared "
                "(the value is not repeated here)"
            ),
        )
        for path in undeclared_card_fields(card)
    ]


# ---- ledger entries embedded in findings -----------------------------------------------------
_NESTED_KEYS: Mapping[str, frozenset[str]] = {
    "mechanism": frozenset(
        mechanism_dict(
            DPSGDRound(noise_multiplier=1.0, sample_rate=0.5, steps=1, max_grad_norm=1.0)
        )
    ),
    "budget": frozenset({"epsilon", "delta"}),
}


def _withheld_body(kind: Any, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    body_type = BODY_TYPES.get(kind) if isinstance(kind, str) else None
    if body_type is None:
        return {key: WITHHELD for key in body}, bool(body)
    declared = {f.name for f in fields(body_type)}
    out: dict[str, Any] = {}
    changed = False
    for key, value in body.items():
        if key not in declared:
            out[key], changed = WITHHELD, True
        elif key in _NESTED_KEYS and isinstance(value, Mapping):
            nested = {k: (v if k in _NESTED_KEYS[key] else WITHHELD) for k, v in value.items()}
            changed = changed or nested != dict(value)
            out[key] = nested
        else:
            out[key] = value
    return out, changed


def withhold_undeclared(finding: Finding) -> Finding:
    """``finding`` with the values of undeclared ledger-body fields of its entry withheld."""
    entry = finding.entry
    if entry is None or not isinstance(entry.get("body"), Mapping):
        return finding
    body, changed = _withheld_body(entry.get("kind"), entry["body"])
    if not changed:
        return finding
    return replace(finding, entry={**entry, "body": body})


# ---- the contract as rows, for the statement -------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class DeclaredValue:
    """One value of the wire contract: where it crosses, its class, how it is covered."""

    crosses: str
    record: str
    key: str
    field_class: str
    covered_by: str

    def to_dict(self) -> dict[str, str]:
        return {
            "crosses": self.crosses,
            "record": self.record,
            "key": self.key,
            "class": self.field_class,
            "covered_by": self.covered_by,
        }


TRAIN_REPLY = "partner → platform: train reply"
ERROR_REPLY = "partner → platform: error reply"
SECAGG_REPLY = "partner → platform: secure-aggregation reply"
MODEL_CARD = "platform → public: model card"
NOWHERE = "stays on the partner's node"

CONTRACT_SOURCES: tuple[tuple[str, tuple[WireField, ...]], ...] = (
    (TRAIN_REPLY, TRAIN_REPLY_FIELDS),
    (ERROR_REPLY, ERROR_REPLY_FIELDS),
    (SECAGG_REPLY, SECAGG_REPLY_FIELDS),
    (MODEL_CARD, CARD_FIELDS),
    (NOWHERE, NOT_SENT),
)


def _all_fields() -> Iterator[tuple[str, WireField]]:
    for crosses, declared in CONTRACT_SOURCES:
        for f in declared:
            yield crosses, f


def declared_values(field_class: FieldClass) -> tuple[DeclaredValue, ...]:
    """Every value of ``field_class`` in the contract, in the contract's order."""
    return tuple(
        DeclaredValue(
            crosses=crosses,
            record=f.record,
            key=f.key,
            field_class=str(f.field_class),
            covered_by=f.accounting,
        )
        for crosses, f in _all_fields()
        if f.field_class == field_class
    )


__all__ = [
    "CONTRACT_SOURCES",
    "ERROR_REPLY",
    "MODEL_CARD",
    "NOWHERE",
    "TRAIN_REPLY",
    "UNDECLARED_CARD_FIELD",
    "WITHHELD",
    "DeclaredValue",
    "card_contract_findings",
    "declared_values",
    "withhold_undeclared",
]
