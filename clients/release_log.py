"""The partner's record of every DP release it makes, written before the update leaves.

Adapter between the partner node and the signed, hash-chained ledger in
``privacy.ledger``: each DP round becomes one ``partner-release`` entry, signed
with the partner's Ed25519 key and fsync-ed. The signed entry also travels with
the update, so the platform can anchor it in its own ledger.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from privacy import PrivacyBudget
from privacy.ledger import Entry, Ledger, PartnerRelease
from privacy.signing import load_private_key

if TYPE_CHECKING:
    from clients.config import PartnerConfig
    from clients.node import TrainReport

logger = logging.getLogger(__name__)


def release_body(
    report: TrainReport, *, run_id: str, server_round: int, budget: PrivacyBudget
) -> PartnerRelease:
    """The typed ledger body of one DP release."""
    if report.release is None:
        raise ValueError("only DP releases are ledgered")
    return PartnerRelease(
        run_id=run_id,
        round=server_round,
        partner_id=report.partner_id,
        base_model_hash=report.base_model_hash,
        update_hash=report.update_hash,
        mechanism=report.release,
        accountant=report.accountant,
        dp_implementation=report.dp_implementation or "unknown",
        unit_of_privacy="example",
        epsilon_after=report.epsilon,
        delta=report.delta,
        budget=budget,
        num_examples=report.num_examples,
    )


class ReleaseLog:
    """Appends one signed entry per DP release to the partner's ledger file."""

    def __init__(self, *, path: Path | None, signing_key: Path | None, owner: str) -> None:
        self.path = path
        self.signing_key = signing_key
        self.owner = owner

    @classmethod
    def for_config(cls, config: PartnerConfig) -> ReleaseLog:
        return cls(path=config.ledger, signing_key=config.signing_key, owner=config.partner_id)

    @property
    def enabled(self) -> bool:
        return self.path is not None and self.signing_key is not None

    def record(
        self,
        report: TrainReport,
        *,
        run_id: str,
        server_round: int,
        budget: PrivacyBudget | None,
    ) -> Entry | None:
        """Append and fsync the entry; ``None`` for non-private rounds or without a key."""
        if report.release is None or budget is None:
            return None
        if not self.enabled:
            logger.warning(
                "partner %s has no signing_key/ledger configured: release of round %d is "
                "not ledgered and cannot be audited",
                self.owner,
                server_round,
            )
            return None
        body = release_body(report, run_id=run_id, server_round=server_round, budget=budget)
        with Ledger.open(
            self.path, signing_key=load_private_key(self.signing_key), owner=self.owner
        ) as ledger:
            return ledger.append(body)


__all__ = ["ReleaseLog", "release_body"]
