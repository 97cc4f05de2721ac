"""The partner's record of every DP release it makes, written before the update leaves.

Adapter between the partner node and the signed, hash-chained ledger in
``privacy.ledger``: the node reports what it released; this module turns it into a
ledger entry body.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from privacy import PrivacyBudget

if TYPE_CHECKING:
    from clients.config import PartnerConfig
    from clients.node import TrainReport

logger = logging.getLogger(__name__)


def release_body(
    report: TrainReport, *, run_id: str, server_round: int, budget: PrivacyBudget | None
) -> dict[str, Any]:
    """The ledger body of one partner release (see privacy.ledger's PartnerRelease)."""
    release = report.release
    return {
        "run_id": run_id,
        "round": server_round,
        "partner_id": report.partner_id,
        "base_model_hash": report.base_model_hash,
        "update_hash": report.update_hash,
        "mechanism": None
        if release is None
        else {
            "noise_multiplier": release.noise_multiplier,
            "max_grad_norm": release.max_grad_norm,
            "sample_rate": release.sample_rate,
            "sampling": release.sampling,
            "steps": release.steps,
        },
        "accountant": report.accountant,
        "dp_implementation": report.dp_implementation,
        "unit_of_privacy": "example",
        "epsilon_after": report.epsilon if release is not None else None,
        "delta": report.delta,
        "budget": None if budget is None else {"epsilon": budget.epsilon, "delta": budget.delta},
        "num_examples": report.num_examples,
    }


class ReleaseLog:
    """Appends one entry per release to the partner's ledger."""

    def __init__(self, ledger: Any | None) -> None:
        self._ledger = ledger

    @classmethod
    def for_config(cls, config: PartnerConfig) -> ReleaseLog:
        return cls(None)

    def record(
        self,
        report: TrainReport,
        *,
        run_id: str,
        server_round: int,
        budget: PrivacyBudget | None,
    ) -> None:
        body = release_body(report, run_id=run_id, server_round=server_round, budget=budget)
        if self._ledger is not None:
            self._ledger.append("partner-release", body)
        logger.debug("partner %s release recorded for round %d", report.partner_id, server_round)


__all__ = ["ReleaseLog", "release_body"]
