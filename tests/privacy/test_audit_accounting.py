"""Spec of the independent accountant: dp_accounting agrees with Opacus where it should,
and says which bound is tighter where they differ."""

from __future__ import annotations

import itertools
import warnings

import pytest

from fedctr.privacy.accounting import PartnerAccountant
from fedctr.privacy.audit.recompute import independent_epsilons
from fedctr.privacy.budget import DPSGDRound

DELTA = 1e-5


def rounds(*params: tuple[float, float, int]) -> list[tuple[DPSGDRound, float]]:
    return [
        (DPSGDRound(noise_multiplier=s, sample_rate=q, steps=n, max_grad_norm=1.0), DELTA)
        for s, q, n in params
    ]


def opacus(kind: str, *params: tuple[float, float, int]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha" at small epsilon
        return PartnerAccountant(kind=kind, history=list(params)).epsilon(DELTA)


GRID = list(itertools.product((1.0, 2.0, 3.0), (0.01, 0.05), (100, 2000)))


@pytest.mark.parametrize(("sigma", "q", "steps"), GRID)
def test_independent_accountants_against_opacus(sigma, q, steps):
    """Typical demo parameters: dp_accounting's RDP is Opacus' RDP within 1%; PLD is
    tighter than RDP (so an RDP claim is never below it) and no looser than Opacus' PRV."""
    (independent,) = independent_epsilons(rounds((sigma, q, steps)))

    assert independent.rdp == pytest.approx(opacus("rdp", (sigma, q, steps)), rel=0.01)
    assert independent.pld < independent.rdp
    assert independent.pld <= opacus("prv", (sigma, q, steps)) * 1.001


def test_composition_across_rounds_matches_opacus_after_every_round():
    """Heterogeneous rounds compose the same way in both libraries, round by round."""
    history = [(1.1, 0.02, 150), (1.3, 0.02, 100), (1.1, 0.03, 200)]

    results = independent_epsilons(rounds(*history))

    for i, result in enumerate(results, start=1):
        assert result.rdp == pytest.approx(opacus("rdp", *history[:i]), rel=0.01)
        assert result.pld <= opacus("prv", *history[:i]) * 1.001
    assert [r.rdp for r in results] == sorted(r.rdp for r in results)


def test_golden_numbers():
    """Pinned: sigma=1, q=0.01, 100 steps, delta=1e-5 (RDP 1.2141, PLD 0.7180)."""
    (result,) = independent_epsilons(rounds((1.0, 0.01, 100)))

    assert result.rdp == pytest.approx(1.2141, abs=1e-4)
    assert result.pld == pytest.approx(0.7180, abs=1e-4)
    assert result.reference("rdp") == ("rdp", result.rdp)
    assert result.reference("prv") == ("pld", result.pld)


def test_a_round_without_steps_costs_nothing():
    """Zero steps release nothing: epsilon stays where it was (zero at the start)."""
    results = independent_epsilons(rounds((1.0, 0.01, 0), (1.0, 0.01, 100), (1.0, 0.01, 0)))

    assert results[0].rdp == results[0].pld == 0.0
    assert results[2] == results[1]


def test_only_the_unconverged_order_warnings_are_silenced(caplog):
    """dp_accounting's per-order convergence warnings are dropped during recomputation;
    the filter is gone afterwards, so any other absl warning still reaches the log."""
    import logging

    release = DPSGDRound(noise_multiplier=0.7785, sample_rate=1 / 13, steps=13, max_grad_norm=5)
    absl = logging.getLogger("absl")
    with caplog.at_level(logging.WARNING, logger="absl"):
        independent_epsilons([(release, 1e-5)])
        absl.warning("Negative Renyi divergence; returning an epsilon of zero")
    messages = [r.getMessage() for r in caplog.records if r.name == "absl"]
    assert not any("failed to converge" in m for m in messages)
    assert any("Negative Renyi divergence" in m for m in messages)
    assert not absl.filters
