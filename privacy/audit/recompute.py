"""Independent recomputation of epsilon with Google's dp_accounting (not Opacus).

Training accounts with Opacus (RDP or PRV); the audit recomputes every cumulative
epsilon from the mechanism parameters recorded in the ledger, composing each round
as ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps)``
under add/remove-one neighbouring (Opacus' relation with Poisson sampling), with two
dp_accounting accountants:

* RDP (``RdpAccountant``): the same method as Opacus' RDP, a different code base.
  It agrees with Opacus within ~0.6% at demo parameters; its order grid differs.
* PLD (privacy loss distributions, composed as ``PLDAccountant`` does, pessimistic
  estimate): tighter than RDP (often 5-40%) and close to Opacus' PRV, which is also
  a numerical privacy-loss-distribution method.

A claim is compared with the independent method of its own kind (RDP claims with
RDP, PRV claims with PLD). Since PLD <= RDP, an RDP claim above the PLD figure is
never a finding: the statement is valid, just not the tightest.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dp_accounting import dp_event
from dp_accounting.pld import privacy_loss_distribution
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

from fedctr.privacy.budget import AccountantKind, DPSGDRound

# Above this RDP epsilon the PLD grid gets huge and the budget is blown anyway.
PLD_MAX_EPSILON = 50.0
PLD_DISCRETIZATION = 1e-4

ReferenceKind = Literal["rdp", "pld"]


@dataclass(frozen=True, kw_only=True)
class IndependentEpsilon:
    """Cumulative epsilon after one release, by dp_accounting's RDP and PLD accountants.

    ``pld`` is None when PLD was not computed (RDP epsilon above :data:`PLD_MAX_EPSILON`).
    """

    rdp: float
    pld: float | None

    def reference(self, claimed_by: AccountantKind) -> tuple[ReferenceKind, float]:
        """The independent figure a claim by ``claimed_by`` is checked against."""
        if claimed_by == "prv" and self.pld is not None:
            return "pld", self.pld
        return "rdp", self.rdp

    @property
    def tightest(self) -> float:
        return self.rdp if self.pld is None else min(self.rdp, self.pld)


def step_noise_multiplier(release: DPSGDRound) -> float:
    """The noise multiplier of one step's Gaussian, derived here from the recorded
    noises (not from fedctr.privacy.budget, whose arithmetic this audit checks): with
    bucket selection, the gradient's and the selection's Gaussians on one Poisson batch,
    each of sensitivity 1 in its own noise units, are jointly one Gaussian whose
    precision is the sum of theirs."""
    if release.selection is None:
        return release.noise_multiplier
    precision = release.noise_multiplier**-2 + release.selection.noise_multiplier**-2
    return 1.0 / math.sqrt(precision)


def release_event(release: DPSGDRound) -> dp_event.DpEvent:
    """One round of DP-SGD as a dp_accounting event."""
    step = dp_event.PoissonSampledDpEvent(
        sampling_probability=release.sample_rate,
        event=dp_event.GaussianDpEvent(noise_multiplier=step_noise_multiplier(release)),
    )
    return dp_event.SelfComposedDpEvent(event=step, count=release.steps)


class _PLDComposer:
    """dp_accounting's PLD composition, with each distinct round's PLD built once.

    The same computation as ``PLDAccountant.compose(release_event(r))`` (it calls
    ``from_gaussian_mechanism(...).self_compose(steps)`` and composes), but repeated
    rounds with identical parameters, the usual case, reuse the PLD already built.
    """

    def __init__(self) -> None:
        self._pld: privacy_loss_distribution.PrivacyLossDistribution | None = None
        self._rounds: dict[tuple[float, float, int], Any] = {}

    def compose(self, release: DPSGDRound) -> None:
        sigma = step_noise_multiplier(release)
        key = (sigma, release.sample_rate, release.steps)
        if key not in self._rounds:
            self._rounds[key] = privacy_loss_distribution.from_gaussian_mechanism(
                standard_deviation=sigma,
                value_discretization_interval=PLD_DISCRETIZATION,
                sampling_prob=release.sample_rate,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            ).self_compose(release.steps)
        round_pld = self._rounds[key]
        self._pld = round_pld if self._pld is None else self._pld.compose(round_pld)

    def epsilon(self, delta: float) -> float:
        return 0.0 if self._pld is None else float(self._pld.get_epsilon_for_delta(delta))


class _UnconvergedOrders(logging.Filter):
    """Drops dp_accounting's per-order "failed to converge" warnings, and nothing else.

    dp_accounting then leaves that RDP order out; epsilon is a minimum over orders, so
    leaving orders out can only raise it. One audit printed hundreds of these lines.
    Every other warning (e.g. a negative Renyi divergence) still reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to converge" not in record.getMessage()


@contextlib.contextmanager
def _quiet_unconverged_orders() -> Iterator[None]:
    absl = logging.getLogger("absl")
    quiet = _UnconvergedOrders()
    absl.addFilter(quiet)
    try:
        yield
    finally:
        absl.removeFilter(quiet)


# ---- distributed (Skellam) releases: a second implementation in mpmath -------------
_MP_ORDERS = (*range(2, 65), 80, 96, 128, 160, 192, 256, 384, 512)


def _skellam_rdp_mp(release: DPSGDRound) -> list[Any]:
    """RDP of one distributed release at each order, recomputed at 40 digits with mpmath
    from the ledgered parameters (Skellam bound of Agarwal et al. 2021, Poisson
    subsampling bound of Zhu & Wang 2019), independently of fedctr.privacy.distributed."""
    import mpmath

    assert release.distributed is not None
    with mpmath.workdps(40):
        return _skellam_rdp_at(release, mpmath)


def _skellam_rdp_at(release: DPSGDRound, mpmath: Any) -> list[Any]:
    assert release.distributed is not None
    d = release.distributed
    l2, l1 = mpmath.mpf(d.l2_sensitivity), mpmath.mpf(d.l1_sensitivity)
    mu = (mpmath.mpf(release.noise_multiplier) * l2) ** 2 / 2
    q = mpmath.mpf(release.sample_rate)

    def base(a: int) -> Any:
        return a * l2**2 / (4 * mu) + min(
            ((2 * a - 1) * l2**2 + 6 * l1) / (16 * mu**2), 3 * l1 / (4 * mu)
        )

    out = []
    for a in _MP_ORDERS:
        if q == 1:
            out.append(base(a))
            continue
        total = (1 - q) ** (a - 1) * (1 + (a - 1) * q) + mpmath.binomial(a, 2) * q**2 * (1 - q) ** (
            a - 2
        ) * mpmath.e ** base(2)
        total += 3 * mpmath.fsum(
            mpmath.binomial(a, j) * q**j * (1 - q) ** (a - j) * mpmath.e ** ((j - 1) * base(j))
            for j in range(3, a + 1)
        )
        out.append(mpmath.log(total) / (a - 1))
    return out


def _mp_epsilon(rdp: list[Any], delta: float) -> float:
    import mpmath

    with mpmath.workdps(40):
        best = min(
            r + mpmath.log1p(-mpmath.mpf(1) / a) - (mpmath.log(delta) + mpmath.log(a)) / (a - 1)
            for r, a in zip(rdp, _MP_ORDERS, strict=True)
        )
        return float(max(best, 0))


@_quiet_unconverged_orders()
def independent_epsilons(releases: Sequence[tuple[DPSGDRound, float]]) -> list[IndependentEpsilon]:
    """Cumulative epsilon after each ``(release, delta)``, composed in order.

    Each figure is at that release's own delta, over it and every release before it.
    Distributed (Skellam) releases are recomputed by :func:`_skellam_rdp_mp` (RDP only,
    no PLD) against the platform; a ledger that mixes them with local releases gets
    the local figure, and the accountant refuses such a participation anyway.
    """
    rdp = RdpAccountant(neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE)
    pld: _PLDComposer | None = _PLDComposer()
    composed = False
    results: list[IndependentEpsilon] = []
    skellam: list[Any] | None = None
    cache: dict[DPSGDRound, list[Any]] = {}
    for release, delta in releases:
        if release.distributed is not None:
            if release not in cache:
                cache[release] = _skellam_rdp_mp(release)
            one = cache[release]
            skellam = one if skellam is None else [x + y for x, y in zip(skellam, one, strict=True)]
            results.append(IndependentEpsilon(rdp=_mp_epsilon(skellam, delta), pld=None))
            continue
        if release.steps > 0:
            rdp.compose(release_event(release))
            if pld is not None:
                pld.compose(release)
            composed = True
        if not composed:
            results.append(IndependentEpsilon(rdp=0.0, pld=0.0))
            continue
        eps_rdp = float(rdp.get_epsilon(delta))
        if pld is not None and eps_rdp > PLD_MAX_EPSILON:
            pld = None
        eps_pld = None if pld is None else pld.epsilon(delta)
        if eps_pld is not None and not math.isfinite(eps_pld):
            eps_pld = None
        results.append(IndependentEpsilon(rdp=eps_rdp, pld=eps_pld))
    return results


def understated(claimed: float, reference: float, *, tolerance: float) -> bool:
    """True if ``claimed`` is below ``reference`` by more than ``tolerance`` (relative)."""
    return claimed < reference * (1.0 - tolerance)


__all__ = [
    "PLD_DISCRETIZATION",
    "PLD_MAX_EPSILON",
    "IndependentEpsilon",
    "ReferenceKind",
    "independent_epsilons",
    "release_event",
    "understated",
]
