"""The one field checker: what it accepts, what it refuses, and what its message says."""

from __future__ import annotations

import math
import re

import pytest

from fedctr.errors import FedctrError
from fedctr.validate import IDENTIFIER, SHA256_HEX, Checker


class _Refused(FedctrError, ValueError):
    """A stand-in for a package's own error class."""


CHECK = Checker(_Refused, "cfg.toml: [training]")


def test_the_message_names_the_place_the_field_and_the_value() -> None:
    with pytest.raises(_Refused) as caught:
        CHECK.integer(0, "batch_size", minimum=1)
    assert str(caught.value) == "cfg.toml: [training]: batch_size must be a positive integer, got 0"
    with pytest.raises(_Refused, match=r"^batch_size must be"):
        Checker(_Refused).integer(0, "batch_size", minimum=1)  # no place, no prefix


def test_at_keeps_the_error_and_names_another_place() -> None:
    with pytest.raises(_Refused, match=r"^other\.toml: x must be a finite number"):
        CHECK.at("other.toml").number("1", "x")


@pytest.mark.parametrize("bad", [True, False, "1", None, math.nan, math.inf, -math.inf])
def test_number_refuses_bools_text_and_non_finite(bad: object) -> None:
    with pytest.raises(_Refused, match="must be a finite number"):
        CHECK.number(bad, "x")


def test_numbers_come_back_as_floats() -> None:
    assert CHECK.number(3, "x") == 3.0 and isinstance(CHECK.number(3, "x"), float)
    assert CHECK.positive(0.5, "x") == 0.5
    assert CHECK.non_negative(0, "x") == 0.0
    assert CHECK.rate(1, "x") == 1.0


@pytest.mark.parametrize(
    ("method", "bad", "message"),
    [
        ("positive", 0, "must be > 0"),
        ("positive", -1.5, "must be > 0"),
        ("non_negative", -1e-12, "must be >= 0"),
        ("rate", 0, r"must be in \(0, 1\]"),
        ("rate", 1.0000001, r"must be in \(0, 1\]"),
        ("rate", math.nan, "must be a finite number"),
    ],
)
def test_ranges_are_checked_after_the_type(method: str, bad: float, message: str) -> None:
    with pytest.raises(_Refused, match=message):
        getattr(CHECK, method)(bad, "x")


@pytest.mark.parametrize(
    ("minimum", "wanted"),
    [(0, "a non-negative integer"), (1, "a positive integer"), (2, "an integer >= 2")],
)
def test_integer_says_what_it_wants(minimum: int, wanted: str) -> None:
    assert CHECK.integer(minimum, "n", minimum=minimum) == minimum
    with pytest.raises(_Refused, match=f"n must be {wanted}, got {minimum - 1}"):
        CHECK.integer(minimum - 1, "n", minimum=minimum)


@pytest.mark.parametrize("bad", [True, 1.0, "1", None])
def test_integer_refuses_bools_floats_and_text(bad: object) -> None:
    with pytest.raises(_Refused, match="must be a non-negative integer"):
        CHECK.integer(bad, "n")


def test_text_matches_in_full_and_shows_only_the_start_of_a_long_value() -> None:
    digest = "a" * 64
    assert CHECK.text(digest, "hash", SHA256_HEX) == digest
    assert CHECK.text("shop-a", "id", IDENTIFIER) == "shop-a"
    for bad in ("A" * 64, "a" * 65, 7, "shop a", "-shop"):
        pattern = SHA256_HEX if len(str(bad)) >= 64 else IDENTIFIER
        with pytest.raises(_Refused, match="must be a string matching"):
            CHECK.text(bad, "field", pattern)
    with pytest.raises(_Refused) as caught:
        CHECK.text("x" * 10_000, "field", re.compile("y"))
    assert len(str(caught.value)) < 200


def test_choice() -> None:
    assert CHECK.choice("rdp", "accountant", ("rdp", "prv")) == "rdp"
    with pytest.raises(_Refused, match=r"accountant must be one of \('rdp', 'prv'\), got 'gdp'"):
        CHECK.choice("gdp", "accountant", ("rdp", "prv"))


def test_table_absent_is_empty_and_unknown_keys_are_named() -> None:
    assert CHECK.table({}, "model") == {}
    raw = {"model": {"name": "lr"}}
    table = CHECK.table(raw, "model", known={"name"})
    assert table == {"name": "lr"} and table is not raw["model"]  # a copy to consume
    with pytest.raises(_Refused, match=r"\[model\] must be a table, got str"):
        CHECK.table({"model": "lr"}, "model")
    with pytest.raises(_Refused, match=r"unknown keys in \[model\]: \['depth', 'widht'\]"):
        CHECK.table({"model": {"name": "lr", "widht": 1, "depth": 2}}, "model", known={"name"})
