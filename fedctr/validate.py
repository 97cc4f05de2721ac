"""Field checks for everything fedctr parses: config files, specs, ledgers, wire records.

One definition of "a finite number", "a positive integer", "a TOML table", so parsers
cannot drift apart (a bool passing as a number, NaN passing as a rate). Each parser
binds a :class:`Checker` to its own domain error class and, where it knows one, to
the place it reads (a file and section), so every message names the field, the
place and what the value must be.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn, TypeVar

from fedctr.errors import FedctrError

#: A SHA-256 digest as written everywhere in fedctr: 64 lowercase hex characters.
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
#: A partner, run or owner identifier: 1-64 of ``[A-Za-z0-9_.-]``, safe as a file name.
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_SHOWN = 60  # untrusted values can be huge; a message shows their start only

T = TypeVar("T")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


@dataclass(frozen=True)
class Checker:
    """Checks that raise ``error`` with messages prefixed by ``where`` (if given).

    Every check refuses ``bool`` where a number is wanted (``True`` is an ``int``
    in Python, never in a config) and returns the value, so a parser reads
    ``rounds = check.integer(raw["rounds"], "rounds", minimum=1)``.
    """

    error: type[FedctrError]
    where: str = ""

    def at(self, where: str) -> Checker:
        """The same checks, naming another place (a file, a section)."""
        return replace(self, where=where)

    def fail(self, message: str) -> NoReturn:
        """Raise the bound error, prefixed with the place."""
        raise self.error(f"{self.where}: {message}" if self.where else message)

    def number(self, value: Any, name: str) -> float:
        """A finite real number (int or float, not bool, not NaN or infinite)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{name} must be a finite number, got {_shown(value)}")
        if not math.isfinite(value):
            self.fail(f"{name} must be a finite number, got {_shown(value)}")
        return float(value)

    def positive(self, value: Any, name: str) -> float:
        """A finite number > 0."""
        if self.number(value, name) <= 0:
            self.fail(f"{name} must be > 0, got {_shown(value)}")
        return float(value)

    def non_negative(self, value: Any, name: str) -> float:
        """A finite number >= 0."""
        if self.number(value, name) < 0:
            self.fail(f"{name} must be >= 0, got {_shown(value)}")
        return float(value)

    def rate(self, value: Any, name: str) -> float:
        """A probability that may be 1 but not 0: in (0, 1]."""
        if not 0 < self.number(value, name) <= 1:
            self.fail(f"{name} must be in (0, 1], got {_shown(value)}")
        return float(value)

    def integer(self, value: Any, name: str, *, minimum: int = 0) -> int:
        """A whole number (not bool) >= ``minimum``."""
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(
                minimum, f"an integer >= {minimum}"
            )
            self.fail(f"{name} must be {wanted}, got {_shown(value)}")
        return value

    def text(self, value: Any, name: str, pattern: re.Pattern[str]) -> str:
        """A string matching ``pattern`` in full."""
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self.fail(f"{name} must be a string matching {pattern.pattern}, got {_shown(value)}")
        return value

    def choice(self, value: Any, name: str, options: Collection[T]) -> T:
        """One of ``options``."""
        if value not in options:
            self.fail(f"{name} must be one of {tuple(options)}, got {_shown(value)}")
        return value  # type: ignore[no-any-return]

    def table(
        self, raw: Mapping[str, Any], name: str, *, known: Collection[str] | None = None
    ) -> dict[str, Any]:
        """``raw[name]`` as a TOML table (empty when absent), with only ``known`` keys."""
        table = raw.get(name, {})
        if not isinstance(table, dict):
            self.fail(f"[{name}] must be a table, got {type(table).__name__}")
        if known is not None:
            unknown = sorted(set(table) - set(known))
            if unknown:
                self.fail(f"unknown keys in [{name}]: {unknown}")
        return dict(table)


__all__ = ["IDENTIFIER", "SHA256_HEX", "Checker"]
