"""A partner's privacy budget and the DP-SGD round it spends it on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fedctr.privacy.errors import InvalidPrivacyParameter

AccountantKind = Literal["rdp", "prv"]
ACCOUNTANT_KINDS: tuple[str, ...] = ("rdp", "prv")


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPrivacyParameter(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise InvalidPrivacyParameter(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class PrivacyBudget:
    """Total (epsilon, delta) a partner allows over its whole participation.

    Unit of privacy: one example (one row of the partner's conversion log).
    """

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if _real("epsilon", self.epsilon) <= 0:
            raise InvalidPrivacyParameter(f"epsilon must be > 0, got {self.epsilon}")
        if not 0 < _real("delta", self.delta) < 1:
            raise InvalidPrivacyParameter(f"delta must be in (0, 1), got {self.delta}")


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
        if _real("noise_multiplier", self.noise_multiplier) <= 0:
            raise InvalidPrivacyParameter("noise_multiplier must be > 0")
        if not 0 < _real("sample_rate", self.sample_rate) <= 1:
            raise InvalidPrivacyParameter(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise InvalidPrivacyParameter(
                f"steps must be a non-negative integer, got {self.steps!r}"
            )
        if _real("max_grad_norm", self.max_grad_norm) <= 0:
            raise InvalidPrivacyParameter("max_grad_norm must be > 0")
        if self.sampling != "poisson":
            raise InvalidPrivacyParameter("only Poisson sampling is accounted for")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["ACCOUNTANT_KINDS", "AccountantKind", "DPSGDRound", "PrivacyBudget"]
