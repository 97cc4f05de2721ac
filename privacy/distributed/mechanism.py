"""The distributed-DP release: one clipped gradient step whose noise is shared out.

Under secure aggregation a partner may add only a *share* of the noise its
guarantee needs, because the platform sees nothing but the sum of at least
``min_shares`` partners' inputs, and the shares add up (Kairouz et al., ICML 2021;
Agarwal et al., NeurIPS 2021). The noise must be discrete to live in SecAgg's
modular arithmetic and to add exactly: each partner adds Skellam noise
``Sk(mu_share)`` (the difference of two Poisson(``mu_share``) draws, variance
``2 mu_share``) to every coordinate of its *quantized* update, and a sum of at least
``min_shares`` such inputs carries ``Sk(mu)`` with ``mu >= min_shares * mu_share``.

What the noise protects must be a sum of per-unit contributions of bounded norm, so
a distributed release is a single DP-SGD step (federated SGD, not local epochs):
one Poisson batch at rate ``q``, per-unit gradients clipped to ``C``, summed,
scaled by ``learning_rate / batch_size`` (declared), quantized onto SecAgg's
integer grid by randomized rounding. One unit then moves the integer vector by at
most ``l2 = scale * learning_rate * C / batch_size + sqrt(d)`` in L2 (the ``sqrt(d)``
bounds what rounding can add, coordinate by coordinate) and, being an integer
vector, by at most ``l1 = min(l2^2, sqrt(d) * l2)`` in L1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from fedctr.privacy.budget import DPSGDRound
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.validate import Checker

_CHECK = Checker(InvalidPrivacyParameter)


@dataclass(frozen=True, kw_only=True)
class SkellamRound:
    """One distributed release, as its ledger entry and the accountant see it.

    ``noise_multiplier`` is sigma of the noise in a sum of ``min_shares`` inputs, in
    units of ``l2``: that sum carries ``Sk(mu)``, ``2 mu = (sigma * l2)^2``.
    """

    noise_multiplier: float
    min_shares: int
    sample_rate: float
    max_grad_norm: float
    l2_sensitivity: float
    l1_sensitivity: float
    steps: int = 1

    def __post_init__(self) -> None:
        _CHECK.positive(self.noise_multiplier, "noise_multiplier")
        _CHECK.integer(self.min_shares, "min_shares", minimum=1)
        if not 0 < _CHECK.number(self.sample_rate, "sample_rate") <= 1:
            raise InvalidPrivacyParameter(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        _CHECK.positive(self.max_grad_norm, "max_grad_norm")
        _CHECK.positive(self.l2_sensitivity, "l2_sensitivity")
        _CHECK.positive(self.l1_sensitivity, "l1_sensitivity")
        if self.steps != 1:
            raise InvalidPrivacyParameter("a distributed release is exactly one step")

    @property
    def mu(self) -> float:
        """Poisson mean of each half of the Skellam noise in a sum of ``min_shares``."""
        return (self.noise_multiplier * self.l2_sensitivity) ** 2 / 2

    @property
    def mu_share(self) -> float:
        """What one partner adds (per half, per coordinate)."""
        return self.mu / self.min_shares

    def seen_by(self, colluding: int) -> SkellamRound:
        """The release as a coalition of the platform and ``colluding`` partners sees it:
        they can subtract their own noise shares, so ``min_shares - colluding`` remain."""
        if not 0 <= colluding < self.min_shares:
            raise InvalidPrivacyParameter(
                f"a coalition leaves at least one share: colluding must be in "
                f"[0, {self.min_shares}), got {colluding}"
            )
        remaining = self.min_shares - colluding
        sigma = self.noise_multiplier * math.sqrt(remaining / self.min_shares)
        return replace(self, noise_multiplier=sigma, min_shares=remaining)

    def to_dict(self) -> dict[str, Any]:
        return {"name": "skellam", **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any) -> SkellamRound:
        if not isinstance(data, dict) or data.get("name") != "skellam":
            raise InvalidPrivacyParameter("not a distributed (Skellam) release")
        values = {k: v for k, v in data.items() if k != "name"}
        if set(values) != set(cls.__dataclass_fields__):
            raise InvalidPrivacyParameter("a Skellam release carries unknown or missing fields")
        return cls(**values)


def skellam_of(release: DPSGDRound) -> SkellamRound | None:
    """The accountant's view of a ledgered release: its Skellam round if it was
    distributed, None for a local (Gaussian) one."""
    if release.distributed is None:
        return None
    return SkellamRound(
        noise_multiplier=release.noise_multiplier,
        min_shares=release.distributed.min_shares,
        sample_rate=release.sample_rate,
        max_grad_norm=release.max_grad_norm,
        l2_sensitivity=release.distributed.l2_sensitivity,
        l1_sensitivity=release.distributed.l1_sensitivity,
    )


def sensitivities(*, unit_norm: float, dimension: int) -> tuple[float, float]:
    """(l2, l1) of one unit's effect on the quantized, randomly rounded sum, where the
    unit's scaled contribution has L2 norm at most ``unit_norm`` (integer units)."""
    _CHECK.positive(unit_norm, "unit_norm")
    _CHECK.integer(dimension, "dimension", minimum=1)
    l2 = unit_norm + math.sqrt(dimension)
    return l2, min(l2 * l2, math.sqrt(dimension) * l2)


__all__ = ["SkellamRound", "sensitivities", "skellam_of"]
