"""The partner's record of every DP release it makes, written before the update leaves,
and of every spend whose update never left (``partner-withheld``).

Adapter between the partner node and the signed, hash-chained ledger in
``fedctr.privacy.ledger``: each DP round becomes one ``partner-release`` entry, signed
with the partner's Ed25519 key and fsync-ed. The signed entry also travels with
the update (the platform rejects an update without one), so a DP partner must
have a signing key and a ledger. The same ledger, verified with the partner's own
key, is what its spend state is reconciled against.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fedctr.clients.errors import PartnerConfigError
from fedctr.clients.state import LedgeredRelease, PartnerStateError
from fedctr.privacy.ledger import (
    Entry,
    Ledger,
    LedgerError,
    PartnerRelease,
    PartnerWithheld,
    read_ledger,
    verify_ledger,
)
from fedctr.privacy.signing import KeyFileError, load_private_key

logger = logging.getLogger(__name__)


class ReleaseLog:
    """Appends one signed entry per DP release to the partner's ledger file."""

    def __init__(self, *, path: Path | None, signing_key: Path | None, owner: str) -> None:
        self.path = path
        self.signing_key = signing_key
        self.owner = owner

    def require(self) -> tuple[Path, Path]:
        """The ledger and key paths; a DP partner without them cannot release anything."""
        if self.path is None or self.signing_key is None:
            raise PartnerConfigError(
                f"partner '{self.owner}' has no [partner] signing_key/ledger: every DP release "
                "must be ledgered and signed before it leaves the node (the platform rejects "
                "unsigned updates). Create a key with 'fedctr partner init' or "
                "'fedctr keys generate' and name it in partner.toml."
            )
        return self.path, self.signing_key

    def releases(self) -> list[LedgeredRelease]:
        """The releases of the partner's own ledger, after verifying chain and signatures."""
        path, key_path = self.require()
        if not path.exists():
            return []
        try:
            key = load_private_key(key_path)
            read = read_ledger(path)
        except (KeyFileError, LedgerError) as exc:
            raise PartnerStateError(f"{path}: cannot read the partner ledger: {exc}") from exc
        findings = verify_ledger(read, key.public_key(), owner=self.owner)
        if findings:
            raise PartnerStateError(
                f"{path}: the partner's own ledger does not verify ({findings[0]}); refusing "
                "to train, since spent budget could not be established. Repair or restore it."
            )
        out = []
        for entry in read.entries:
            body = entry.parsed_body()
            if isinstance(body, PartnerRelease | PartnerWithheld):
                out.append(
                    LedgeredRelease(
                        body.run_id,
                        body.round,
                        body.mechanism,
                        body.unit_of_privacy,
                        released=isinstance(body, PartnerRelease),
                    )
                )
        return out

    def find_release(self, run_id: str, server_round: int) -> tuple[Entry, PartnerRelease] | None:
        """The signed release of (``run_id``, ``server_round``), if the node made one."""
        path, _ = self.require()
        if not path.exists():
            return None
        for entry in read_ledger(path).entries:
            body = entry.parsed_body()
            if (
                isinstance(body, PartnerRelease)
                and body.run_id == run_id
                and body.round == server_round
            ):
                return entry, body
        return None

    def record(self, body: PartnerRelease | PartnerWithheld) -> Entry:
        """Append and fsync the signed entry of one DP release (or withheld spend)."""
        path, key_path = self.require()
        with Ledger.open(path, signing_key=load_private_key(key_path), owner=self.owner) as ledger:
            return ledger.append(body)


__all__ = ["ReleaseLog"]
