"""The unit of privacy: what one neighbouring dataset adds or removes.

``example``: one row of a partner's log (event-level DP). ``user``: every row of
one person, the person named by the spec's ``user_key`` columns (user-level DP).
The mechanism (Poisson rate, steps, noise, clip) and its accountant are the same
for both; what changes is *what is sampled and clipped*: rows, or users with their
rows summed. Accounting user-level DP-SGD at the user sampling rate is the
subsampled Gaussian's analysis with the user as the sampled unit, so no group-privacy
multiplier appears (:func:`group_privacy` is what example-level DP gives a user,
for comparison only).

``max_rows`` is the data-independent bound on one unit's rows in a round: 1 for an
example by definition; for a user the partner's declared ``max_rows_per_user``
(rows beyond it are left out of that round, chosen before its first step by CSPRNG
priorities). Privacy
does not rest on it (each user's summed gradient is clipped to C whatever its
size); compute and memory do, so it is declared and recorded, never counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.validate import Checker

_CHECK = Checker(InvalidPrivacyParameter)


class PrivacyUnit(StrEnum):
    """Which neighbour relation a partner's (epsilon, delta) is stated for."""

    EXAMPLE = "example"
    USER = "user"


PRIVACY_UNITS: tuple[str, ...] = tuple(u.value for u in PrivacyUnit)

_RELATION = {
    PrivacyUnit.EXAMPLE: "add/remove one row of the partner's training log",
    PrivacyUnit.USER: "add/remove all rows of one user of the partner's training log",
}
_DESCRIPTION = {
    PrivacyUnit.EXAMPLE: "one example: one row of a partner's training log (event-level privacy)",
    PrivacyUnit.USER: (
        "one user: every row of one person in a partner's training log, the person named by "
        "the spec's user key (user-level privacy)"
    ),
}


@dataclass(frozen=True)
class UnitOfPrivacy:
    """A partner's unit and its declared bound on one unit's rows per step."""

    kind: PrivacyUnit = PrivacyUnit.EXAMPLE
    max_rows: int = 1

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", PrivacyUnit(self.kind))
        except ValueError:
            raise InvalidPrivacyParameter(
                f"unit of privacy must be one of {PRIVACY_UNITS}, got {self.kind!r}"
            ) from None
        _CHECK.integer(self.max_rows, "max_rows_per_user", minimum=1)
        if self.kind is PrivacyUnit.EXAMPLE and self.max_rows != 1:
            raise InvalidPrivacyParameter("an example is one row: its max_rows is 1")

    @classmethod
    def example(cls) -> UnitOfPrivacy:
        return cls(PrivacyUnit.EXAMPLE, 1)

    @classmethod
    def user(cls, max_rows: int) -> UnitOfPrivacy:
        return cls(PrivacyUnit.USER, max_rows)

    @property
    def is_user(self) -> bool:
        return self.kind is PrivacyUnit.USER

    @property
    def neighbour_relation(self) -> str:
        return _RELATION[self.kind]

    def describe(self) -> str:
        """The unit in words, for the privacy statement and the report."""
        text = _DESCRIPTION[self.kind]
        if self.is_user:
            text += f", at most {self.max_rows} of its rows used in each round"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"unit_of_privacy": self.kind.value, "max_rows_per_unit": self.max_rows}


def group_privacy(epsilon: float, delta: float, group_size: int) -> tuple[float, float]:
    """What an (epsilon, delta)-DP guarantee for one row gives a group of ``group_size``
    rows (e.g. one user's rows under example-level DP): ``(k eps, k e^{(k-1) eps} delta)``
    (Dwork & Roth 2014, Thm 2.2 extended to approximate DP; Vadhan 2017, Lemma 2.3).

    For comparison only, never for accounting: it is the honest answer to "what does
    example-level DP promise a user with k rows", and it is why fedctr offers unit =
    user. The delta grows exponentially, so for large k the pair says almost nothing.
    """
    _CHECK.non_negative(epsilon, "epsilon")
    _CHECK.integer(group_size, "group_size", minimum=1)
    k = group_size
    grown = math.exp(min((k - 1) * epsilon, 700.0))
    return k * epsilon, min(1.0, k * grown * delta)


__all__ = ["PRIVACY_UNITS", "PrivacyUnit", "UnitOfPrivacy", "group_privacy"]
