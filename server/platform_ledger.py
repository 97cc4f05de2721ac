"""The platform's own signed ledger: what each partner reported, and what was published.

Each accepted (or rejected) training reply is anchored by the hash of the partner's
signed ledger entry that came with it, so the auditor can tie the two chains
together; each published model is recorded with its weights and card hashes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.ledger import (
    PLATFORM_OWNER,
    Entry,
    Ledger,
    LedgerError,
    PartnerRelease,
    PlatformPublish,
    PlatformReport,
)
from server.registry import PublishedModel
from server.rounds import RoundRecord

logger = logging.getLogger(__name__)

LEDGER_ENTRY_KEY = "ledger-entry"


class PlatformLedger:
    """Appends platform entries; opened per write so a crash never holds the file."""

    def __init__(self, path: Path, signing_key: Ed25519PrivateKey) -> None:
        self.path = path
        self._key = signing_key

    def record_round(self, record: RoundRecord) -> int:
        """One ``platform-report`` per partner reply carrying a signed release entry."""
        written = 0
        with Ledger.open(self.path, signing_key=self._key, owner=PLATFORM_OWNER) as ledger:
            for train in record.train:
                raw = str(train.report.get(LEDGER_ENTRY_KEY, "") or "")
                if not raw:
                    continue
                try:
                    entry = Entry.from_json(raw)
                    release = entry.parsed_body()
                except (LedgerError, ValueError) as exc:
                    logger.warning(
                        "round %d: partner %s sent an unreadable ledger entry: %s",
                        record.round,
                        train.partner_id,
                        exc,
                    )
                    continue
                if not isinstance(release, PartnerRelease):
                    continue
                ledger.append(
                    PlatformReport.from_release(
                        release, partner_entry_hash=entry.hash, accepted=record.aggregated
                    )
                )
                written += 1
        return written

    def record_publish(
        self, *, run_id: str, published: PublishedModel, rounds: int, partners: tuple[str, ...]
    ) -> None:
        with Ledger.open(self.path, signing_key=self._key, owner=PLATFORM_OWNER) as ledger:
            ledger.append(
                PlatformPublish(
                    run_id=run_id,
                    model_version=published.version,
                    weights_sha256=published.weights_sha256,
                    card_sha256=published.card_sha256,
                    rounds=rounds,
                    partners=partners,
                )
            )


__all__ = ["LEDGER_ENTRY_KEY", "PlatformLedger"]
