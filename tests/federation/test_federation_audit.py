"""A short federation with canary clients on Flower's simulation engine (Ray).

The estimate must be finite, far above what the same estimator gives for canaries
the model never saw (the zero-signal check, below its noise floor), and the round
log the ledger is built from must name only the real partners.
"""

from __future__ import annotations

import math

import pytest

from fedctr.federation.demo.federation_audit import FederationAuditOptions, run_federation_audit
from fedctr.server.platform.strategies.canary_clients import CanaryConfig

pytestmark = pytest.mark.slow


def test_inserted_canaries_show_and_unseen_ones_do_not(tmp_path) -> None:
    result = run_federation_audit(
        FederationAuditOptions(
            workdir=tmp_path / "audit",
            canaries=CanaryConfig(canaries=20, unseen=20, seed=1),
            rounds=2,
            model="lr",
        )
    )
    assert result.rounds == 2 and result.inserted == 20
    assert math.isfinite(result.final.epsilon) and math.isfinite(result.all_iterates.epsilon)
    assert result.unseen_final.epsilon < result.floor
    assert result.final.epsilon > 10 * max(result.floor, 1.0)
    assert result.all_iterates.epsilon > result.floor
    assert set(result.claimed_epsilon) == {"shop-a", "advertiser-b", "crm-c"}
