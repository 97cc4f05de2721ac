"""The wire contract: strict on every side, and the README says exactly what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedctr.privacy import DPSGDRound, PrivacyBudget
from fedctr.privacy.wire import (
    CARD_FIELDS,
    ERROR_REPLY_FIELDS,
    METRICS,
    NOT_SENT,
    REPORT,
    SECAGG_REPLY_FIELDS,
    TRAIN_REPLY_FIELDS,
    ContractViolation,
    ErrorCode,
    ErrorReply,
    FieldClass,
    Problem,
    TrainReply,
    undeclared_card_fields,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _reply(**overrides) -> TrainReply:
    values = {
        "partner_id": "shop-a",
        "release": DPSGDRound(noise_multiplier=1.0, sample_rate=0.05, steps=20, max_grad_norm=5.0),
        "accountant": "rdp",
        "dp_implementation": "fedctr-sparse",
        "epsilon": 1.5,
        "delta": 1e-5,
        "budget": PrivacyBudget(epsilon=8.0, delta=1e-5),
        "aggregation_weight": 1.0,
        "base_model_hash": "a" * 64,
        "update_hash": "b" * 64,
        "ledger_entry": "{}",
    }
    return TrainReply(**{**values, **overrides})


def test_a_train_reply_round_trips_through_its_records() -> None:
    reply = _reply()

    assert TrainReply.from_records(reply.to_records()) == reply


@pytest.mark.parametrize(
    ("record", "key", "value"),
    [
        (METRICS, "train-loss", 0.3),
        (METRICS, "num-examples", 1500),
        (REPORT, "rows-skipped", 3),
        (REPORT, "compute-seconds", 1.2),
    ],
)
def test_an_undeclared_value_in_a_train_reply_is_refused(record, key, value) -> None:
    records = _reply().to_records()
    records[record][key] = value

    with pytest.raises(ContractViolation, match="undeclared keys"):
        TrainReply.from_records(records)


def test_a_missing_declared_value_or_an_extra_record_is_refused() -> None:
    records = _reply().to_records()
    del records[REPORT]["update-hash"]
    with pytest.raises(ContractViolation, match="missing keys"):
        TrainReply.from_records(records)
    with pytest.raises(ContractViolation, match="undeclared records"):
        TrainReply.from_records({**_reply().to_records(), "evaluation": {"auc": 0.7}})


def test_ill_typed_values_are_refused() -> None:
    records = _reply().to_records()
    records[METRICS]["epsilon"] = float("nan")
    with pytest.raises(ContractViolation):
        TrainReply.from_records(records)
    with pytest.raises(ContractViolation):
        _reply(update_hash="not a hash")


def test_error_replies_carry_code_class_file_and_column_only() -> None:
    error = ErrorReply(
        code=ErrorCode.BAD_DATA, problem=Problem.BAD_LABEL, file="a.csv", column="click"
    )

    assert error.reason() == "problem=bad-label file=a.csv column=click"
    assert ErrorReply.parse(1002, error.reason()) == error
    for text in ("a.csv: row 17: got 'x'", "problem=bad-label value=x", "problem=nope"):
        with pytest.raises(ContractViolation):
            ErrorReply.parse(1002, text)
    with pytest.raises(ContractViolation, match="undeclared error code"):
        ErrorReply.parse(999, "problem=internal")


def test_a_card_value_outside_card_fields_is_undeclared() -> None:
    card = {
        "format": "fedctr-model-card",
        "metrics": {"platform_holdout": {"auc": 0.7}, "federated": {"auc": 0.8}},
        "privacy": {"partners": [{"partner_id": "a", "num_examples": 10}]},
        "training": {"failures": []},
    }

    assert undeclared_card_fields(card) == [
        "metrics.federated.auc",
        "privacy.partners[].num_examples",
    ]


def test_the_readme_boundary_table_lists_every_declared_value_with_its_class() -> None:
    """README, contract and tests agree: every field appears with its class."""
    text = README.read_text()
    section = text[text.index("## Privacy boundary") : text.index("## How a round works")]
    for field in (
        *TRAIN_REPLY_FIELDS,
        *ERROR_REPLY_FIELDS,
        *SECAGG_REPLY_FIELDS,
        *NOT_SENT,
        *CARD_FIELDS,
    ):
        name = "model update (every tensor)" if field.key == "*" else field.key
        rows = [line for line in section.splitlines() if line.startswith("|")]
        cell = name if field.key == "*" or field.field_class is FieldClass.NOT_SENT else f"`{name}`"
        row = next((line for line in rows if line.startswith(f"| {cell} |")), None)
        assert row is not None, f"README 'Privacy boundary' does not list {name}"
        if field.field_class is not FieldClass.NOT_SENT:
            assert field.field_class.value in row, f"README gives {name} another class"
