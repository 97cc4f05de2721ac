"""The in-process RDP memo changes nothing but time: the same floats, the same noise."""

from __future__ import annotations

import pytest
from opacus.accountants.analysis import rdp

from fedctr.privacy import PrivacyBudget, calibrate_noise_multiplier
from fedctr.privacy.rdp_memo import is_memoized, memoize_opacus_rdp


def _calibrate() -> float:
    return calibrate_noise_multiplier(
        budget=PrivacyBudget(epsilon=3.0, delta=1e-5),
        sample_rate=0.1,
        total_steps=40,
        accountant="rdp",
        spent=[(1.3, 0.1, 10)],
    )


def test_memoized_rdp_calibrates_to_the_very_same_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rdp, "_compute_rdp", rdp._compute_rdp)  # restored afterwards
    plain = _calibrate()
    orders = [1.5, 2.0, 7.25, 32.0]
    terms = [rdp._compute_rdp(0.1, 1.3, a) for a in orders]

    memoize_opacus_rdp()
    memoize_opacus_rdp()  # idempotent

    assert is_memoized()
    assert _calibrate() == plain and _calibrate() == plain
    assert [rdp._compute_rdp(0.1, 1.3, a) for a in orders] == terms
