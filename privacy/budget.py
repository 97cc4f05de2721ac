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
class BucketSelection:
    """DP selection of the embedding rows a step may update (DP-AdaFEST, Ghazi et al.,
    NeurIPS 2023): each unit's indicator of the rows it touches, scaled to L2 norm 1,
    summed over the batch, plus N(0, noise_multiplier^2) on *every* row; rows whose
    noisy count exceeds ``threshold`` receive the step's gradient and noise, the others
    nothing. A second Gaussian mechanism on the same Poisson batch: see
    :attr:`DPSGDRound.accounted_noise_multiplier`."""

    noise_multiplier: float
    threshold: float

    def __post_init__(self) -> None:
        _CHECK.positive(self.noise_multiplier, "selection noise_multiplier")
        _CHECK.number(self.threshold, "selection threshold")


@dataclass(frozen=True, kw_only=True)
class DistributedNoise:
    """Distributed DP (:mod:`fedctr.privacy.distributed`): the release is one clipped
    gradient step whose noise is discrete (Skellam) and shared out, so the platform,
    which unmasks only sums of at least ``min_shares`` partners, sees the full noise.
    ``l2_sensitivity`` / ``l1_sensitivity`` are one unit's effect on the quantized
    update in integer units (rounding included); ``noise_multiplier`` of the round is
    then sigma of the summed noise in units of ``l2_sensitivity``."""

    min_shares: int
    l2_sensitivity: float
    l1_sensitivity: float

    def __post_init__(self) -> None:
        _CHECK.integer(self.min_shares, "min_shares", minimum=1)
        _CHECK.positive(self.l2_sensitivity, "l2_sensitivity")
        _CHECK.positive(self.l1_sensitivity, "l1_sensitivity")


@dataclass(frozen=True, kw_only=True)
class DPSGDRound:
    """One release: ``steps`` DP-SGD steps of a subsampled Gaussian mechanism.

    ``noise_multiplier`` is the gradient noise (std ``noise_multiplier * max_grad_norm``),
    as in Opacus. With ``selection`` each step also releases the noisy row counts; the
    two Gaussians share one Poisson batch and each has sensitivity 1 in its own noise
    units, so together they are one subsampled Gaussian with
    ``accounted_noise_multiplier`` = (sigma_grad^-2 + sigma_select^-2)^(-1/2), what
    every accountant is given. Immutable, so what the budget check approved is exactly
    what gets recorded.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    sampling: Literal["poisson"] = "poisson"
    selection: BucketSelection | None = None
    distributed: DistributedNoise | None = None

    def __post_init__(self) -> None:
        _CHECK.positive(self.noise_multiplier, "noise_multiplier")
        _CHECK.rate(self.sample_rate, "sample_rate")
        _CHECK.integer(self.steps, "steps")
        _CHECK.positive(self.max_grad_norm, "max_grad_norm")
        if self.sampling != "poisson":
            raise InvalidPrivacyParameter("only Poisson sampling is accounted for")
        if self.selection is not None and not isinstance(self.selection, BucketSelection):
            raise InvalidPrivacyParameter("selection must be a BucketSelection or None")
        if self.distributed is not None:
            if not isinstance(self.distributed, DistributedNoise):
                raise InvalidPrivacyParameter("distributed must be a DistributedNoise or None")
            if self.steps > 1 or self.selection is not None:
                raise InvalidPrivacyParameter(
                    "a distributed release is one gradient step, without bucket selection"
                )

    @property
    def accounted_noise_multiplier(self) -> float:
        """The noise multiplier of the one subsampled Gaussian the step amounts to."""
        if self.selection is None:
            return self.noise_multiplier
        return composed_noise_multiplier(self.noise_multiplier, self.selection.noise_multiplier)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def composed_noise_multiplier(*sigmas: float) -> float:
    """Gaussian mechanisms on one batch, each of sensitivity 1 in its own noise units,
    compose into one of noise multiplier (sum_i sigma_i^-2)^(-1/2)."""
    return sum(s**-2 for s in sigmas) ** -0.5


def split_noise_multiplier(accounted: float, ratio: float) -> tuple[float, float]:
    """(gradient sigma, selection sigma) with ``selection = ratio * gradient`` that
    compose to ``accounted``: the inverse of :func:`composed_noise_multiplier`."""
    _CHECK.positive(accounted, "noise_multiplier")
    _CHECK.positive(ratio, "selection noise ratio")
    gradient = accounted * (1 + ratio**-2) ** 0.5
    return gradient, ratio * gradient


__all__ = [
    "ACCOUNTANT_KINDS",
    "BUDGET_REL_TOL",
    "AccountantKind",
    "BucketSelection",
    "DPSGDRound",
    "DistributedNoise",
    "PrivacyBudget",
    "composed_noise_multiplier",
    "split_noise_multiplier",
]
