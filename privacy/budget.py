"""A partner's privacy budget and the DP-SGD round it spends it on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.validate import Checker

AccountantKind = Literal["rdp", "prv"]
ACCOUNTANT_KINDS: tuple[str, ...] = ("rdp", "prv")

#: Relative slack when an accountant's epsilon is compared with a budget: a round
#: calibrated to spend exactly the budget must not be refused for floating-point noise
#: in the accountant, and anything further over is a real overrun.
BUDGET_REL_TOL = 1e-9


_CHECK = Checker(InvalidPrivacyParameter)


@dataclass(frozen=True, kw_only=True)
class PrivacyBudget:
    """Total (epsilon, delta) a partner allows over its whole participation.

    Unit of privacy: one example (one row of the partner's conversion log).
    """

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        _CHECK.positive(self.epsilon, "epsilon")
        if not 0 < _CHECK.number(self.delta, "delta") < 1:
            raise InvalidPrivacyParameter(f"delta must be in (0, 1), got {self.delta}")

    def exceeded_by(self, epsilon: float, *, rel_tol: float = BUDGET_REL_TOL) -> bool:
        """True if a cumulative spend of ``epsilon`` is over this budget.

        The one over-budget comparison: the partner's refusal, the ledger audit and
        every other site ask it, so they cannot disagree about a round at the edge.
        An auditor's own, looser ``rel_tol`` is for figures it recomputed itself.
        """
        return epsilon > self.epsilon * (1 + rel_tol)


@dataclass(frozen=True, kw_only=True)
class DPSGDRound:
    """One release: ``steps`` DP-SGD steps of a subsampled Gaussian mechanism.

    Immutable, so what the budget check approved is exactly what gets recorded.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    sampling: Literal["poisson"] = "poisson"

    def __post_init__(self) -> None:
        _CHECK.positive(self.noise_multiplier, "noise_multiplier")
        _CHECK.rate(self.sample_rate, "sample_rate")
        _CHECK.integer(self.steps, "steps")
        _CHECK.positive(self.max_grad_norm, "max_grad_norm")
        if self.sampling != "poisson":
            raise InvalidPrivacyParameter("only Poisson sampling is accounted for")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = [
    "ACCOUNTANT_KINDS",
    "BUDGET_REL_TOL",
    "AccountantKind",
    "DPSGDRound",
    "PrivacyBudget",
]
