"""The one model card schema: writer, fail-closed parser, and the wire contract agree."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fedctr.errors import FedctrError
from fedctr.models import builtin_spec_path, load_spec
from fedctr.privacy.card import (
    CardFieldError,
    CardFormatError,
    ContextFallback,
    EmpiricalAuditStatement,
    ModelCard,
    ModelCardFields,
    PartnerProvenance,
    ServingGuard,
)
from fedctr.privacy.wire import CARD_FIELDS, undeclared_card_fields


def _fields(**change: Any) -> ModelCardFields:
    """Every section filled, a failure and a holdout metric included."""
    values: dict[str, Any] = {
        "run_id": "run-7",
        "rounds": 2,
        "partners": (
            PartnerProvenance(
                partner_id="shop-a",
                epsilon=1.25,
                delta=1e-5,
                accountant="prv",
                unit_of_privacy="example",
                dp_implementation="opacus-ghost",
                rounds_contributed=2,
                noise="distributed",
            ),
        ),
        "empirical_audits": (
            EmpiricalAuditStatement(
                partners=("shop-a",),
                model="lr",
                dp_implementation="opacus-ghost",
                claimed_epsilon=1.25,
                lower_bound=0.12,
                confidence=0.95,
                canaries=1000,
                ledger_entry="cd" * 32,
            ),
        ),
        "metrics": {"platform_holdout": {"auc": 0.7, "logloss": 0.41}},
        "training": {
            "strategy": "fedavg",
            "min_partners": 1,
            "rounds_planned": 3,
            "secure_aggregation": {"protocol": "none"},
            "rounds_aggregated": 2,
            "failures": [{"round": 3, "node_id": 17, "kind": "bad-data"}],
        },
        "serving": ServingGuard(base_rate=0.05, mean_prediction_low=0, mean_prediction_high=1),
        "fallback": ContextFallback(logit_shift=-0.25),
    }
    return ModelCardFields(**(values | change))


def _card(**change: Any) -> ModelCard:
    return ModelCard.build(
        _fields(**change),
        model_version="v0001-0123456789ab",
        created_at=datetime(2025, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        weights_sha256="ab" * 32,
        spec=load_spec(builtin_spec_path("demo")),
        model_config={"name": "lr"},
        signing_key_id="0123456789abcdef",
    )


def _leaves(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, prefix + "[]")
    else:
        yield prefix


def _covers(pattern: str, path: str) -> bool:
    return path.startswith(pattern[:-1]) if pattern.endswith(".*") else path == pattern


def test_the_typed_card_writes_exactly_what_card_fields_declares() -> None:
    """Nothing the schema writes is undeclared, and every declared field is written:
    the typed card and fedctr.privacy.wire.CARD_FIELDS cannot drift apart."""
    leaves = list(_leaves(_card().to_json()))

    assert undeclared_card_fields(_card().to_json()) == []
    unwritten = [f.key for f in CARD_FIELDS if not any(_covers(f.key, p) for p in leaves)]
    assert unwritten == []


def test_json_round_trips_in_both_directions() -> None:
    card = _card()
    data = card.to_json()

    assert ModelCard.from_json(data) == card
    assert ModelCard.from_json(data).to_json() == data
    assert data["serving"]["mean_prediction_low"] == 0 and isinstance(
        data["serving"]["mean_prediction_low"], int
    )  # numbers are written as given, so a re-written card signs the same


def test_to_json_is_a_copy() -> None:
    card = _card()
    card.to_json()["training"]["failures"].clear()

    assert card.training["failures"]


def test_the_builder_refuses_undeclared_values() -> None:
    with pytest.raises(CardFieldError, match=r"undeclared values: \['training.seconds'\]"):
        _card(training={"strategy": "fedavg", "seconds": 12.5})


def _edit(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with dotted ``path`` set to ``value`` (deleted if ``...``)."""
    out = copy.deepcopy(data)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = out
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("privacy.neighbour_relation", ..., "privacy.neighbour_relation"),
        ("privacy.partners", {}, "privacy.partners"),
        ("privacy.partners.0.epsilon", "1.0", "epsilon"),
        ("privacy.partners.0.delta", 1.0, "delta"),
        ("privacy.partners.0.accountant", "moments", "accountant"),
        ("privacy.partners.0.rounds_contributed", ..., "privacy.partners[0].rounds_contributed"),
        ("privacy.num_partners", 2, "privacy.num_partners"),
        ("serving.base_rate", True, "base_rate"),
        ("serving.non_personalized", ..., "serving.non_personalized"),
        ("serving.non_personalized.method", "retrain", "method"),
        ("weights.file", "model.pt", "weights.file"),
        ("weights.sha256", "not a hash", "weights.sha256"),
        ("signing.algorithm", "rsa", "signing.algorithm"),
        ("created_at", "2025-01-02", "created_at"),
        ("metrics", [], "metrics"),
        ("model", {"hidden": [8]}, "model.name"),
        ("rounds", -1, "rounds"),
    ],
)
def test_the_parser_fails_closed_naming_the_field(path: str, value: Any, named: str) -> None:
    data = _edit(_card().to_json(), path, value)

    with pytest.raises(CardFieldError, match=named.replace("[", r"\[").replace("]", r"\]")):
        ModelCard.from_json(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "not a fedctr model card"),
        ({"format": "other"}, "not a fedctr model card"),
        ({"format": "fedctr-model-card", "format_version": 1}, "upgrade fedctr"),
    ],
)
def test_a_foreign_or_older_card_is_a_format_error(data: Any, message: str) -> None:
    with pytest.raises(CardFormatError, match=message):
        ModelCard.from_json(data)


def test_keys_the_schema_does_not_model_are_left_to_the_contract() -> None:
    """An authentic card that overshares still parses; the contract names what it overshares."""
    data = _edit(_card().to_json(), "privacy.partners.0.num_examples", 5000)

    assert ModelCard.from_json(data) == _card()
    assert undeclared_card_fields(data) == ["privacy.partners[].num_examples"]


def test_card_errors_are_fedctr_value_errors() -> None:
    assert issubclass(CardFieldError, FedctrError) and issubclass(CardFieldError, ValueError)
    assert issubclass(CardFormatError, FedctrError) and issubclass(CardFormatError, ValueError)
