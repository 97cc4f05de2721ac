"""The platform's own signed ledger: what each partner reported, and what was published.

Each training reply carries the partner's signed ledger entry for that release.
Before an update is aggregated the platform checks the entry (signature, partner,
run, round, update hash); afterwards it anchors the entry's hash in its own
chain, marked accepted or not, so the auditor can tie the two chains together.
Each published model is recorded with its weights and card hashes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedctr.privacy.ledger import (
    PLATFORM_OWNER,
    Entry,
    Ledger,
    LedgerError,
    LedgerWriteRefused,
    PartnerRelease,
    PlatformEmpiricalAudit,
    PlatformPublish,
    PlatformReport,
    verify_entry,
)
from fedctr.privacy.signing import KeyFileError, SignatureInvalid, load_public_key
from fedctr.privacy.wire import TrainReply
from fedctr.server.platform.rounds import PartnerTrainRecord, RoundRecord
from fedctr.server.registry import PublishedModel

logger = logging.getLogger(__name__)


def load_partner_keys(directory: Path | None) -> dict[str, Ed25519PublicKey]:
    """``<partner_id>.pub`` files of registered partners (empty if no folder)."""
    if directory is None or not directory.is_dir():
        return {}
    keys = {}
    for path in sorted(directory.glob("*.pub")):
        try:
            keys[path.stem] = load_public_key(path)
        except KeyFileError as exc:
            logger.warning("ignoring partner key %s: %s", path, exc)
    return keys


def _entry(reply: TrainReply) -> tuple[Entry, PartnerRelease]:
    entry = Entry.from_json(reply.ledger_entry)
    release = entry.parsed_body()
    if not isinstance(release, PartnerRelease):
        raise LedgerError(f"entry kind '{entry.kind}' is not a partner release")
    return entry, release


def _disagreement(reply: TrainReply, release: PartnerRelease) -> str | None:
    """The first declared value where the reply and its signed entry differ, or None."""
    pairs = (
        ("update hash", release.update_hash, reply.update_hash),
        ("base model hash", release.base_model_hash, reply.base_model_hash),
        ("mechanism", release.mechanism, reply.release),
        ("accountant", release.accountant, reply.accountant),
        ("unit of privacy", release.unit, reply.unit),
        ("dp implementation", release.dp_implementation, reply.dp_implementation),
        ("epsilon", release.epsilon_after, reply.epsilon),
        ("delta", release.delta, reply.delta),
        ("budget", release.budget, reply.budget),
        ("secure aggregation", release.secure_aggregation, reply.secure_aggregation),
        ("secure-aggregation session", release.secagg_session, reply.secagg_session),
    )
    for name, signed, sent in pairs:
        if signed != sent:
            return f"ledger entry's {name} differs from the reply's"
    return None


def _reported(ledger: Ledger) -> dict[tuple[str, int, str], PlatformReport]:
    """The reports already in the ledger, by (run, round, partner): a resumed run re-commits
    a round whose entries were written just before a crash, and each is kept once."""
    out = {}
    for entry in ledger.entries:
        if entry.kind == PlatformReport.KIND:
            body = entry.parsed_body()
            assert isinstance(body, PlatformReport)
            out[(body.run_id, body.round, body.partner_id)] = body
    return out


class PlatformLedger:
    """Checks partner entries and appends platform entries (opened per write)."""

    def __init__(
        self,
        path: Path,
        signing_key: Ed25519PrivateKey,
        *,
        partner_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self.path = path
        self._key = signing_key
        self.partner_keys = dict(partner_keys or {})

    def entry_problem(self, *, run_id: str, server_round: int, reply: TrainReply) -> str | None:
        """Why the reply's ledger entry does not vouch for this update, or None.

        Fails closed: an unreadable entry, an unregistered partner key, a bad signature
        or any declared value that differs from the signed one rejects the update.
        """
        try:
            entry, release = _entry(reply)
        except (LedgerError, ValueError) as exc:
            return f"unreadable ledger entry: {exc}"
        partner = reply.partner_id
        if release.partner_id != partner or entry.owner != partner:
            return f"ledger entry is for partner '{release.partner_id}', reply from '{partner}'"
        if release.run_id != run_id or release.round != server_round:
            return (
                f"ledger entry is for run {release.run_id} round {release.round}, "
                f"not run {run_id} round {server_round}"
            )
        problem = _disagreement(reply, release)
        if problem is not None:
            return problem
        key = self.partner_keys.get(partner)
        if key is None:
            return f"partner '{partner}' has no registered public key; its update is not accepted"
        try:
            verify_entry(entry, key)
        except (SignatureInvalid, LedgerError):
            return "ledger entry signature does not verify with the partner's key"
        return None

    def record_round(self, record: RoundRecord) -> int:
        """One ``platform-report`` per reply that carried a release entry."""
        rows: list[tuple[PartnerTrainRecord, bool]] = [
            *((t, record.aggregated) for t in record.train),
            *((t, False) for t in record.rejected),
        ]
        written = 0
        with Ledger.open(self.path, signing_key=self._key, owner=PLATFORM_OWNER) as ledger:
            reported = _reported(ledger)
            for train, accepted in rows:
                if train.reply is None:
                    continue  # a non-private benchmark baseline: nothing was ledgered
                try:
                    entry, release = _entry(train.reply)
                except (LedgerError, ValueError) as exc:
                    logger.warning(
                        "round %d: partner %s: unreadable ledger entry: %s",
                        record.round,
                        train.partner_id,
                        exc,
                    )
                    continue
                report = PlatformReport.from_release(
                    release, partner_entry_hash=entry.hash, accepted=accepted
                )
                earlier = reported.get((report.run_id, report.round, report.partner_id))
                if earlier is not None:
                    if earlier != report:
                        raise LedgerWriteRefused(
                            f"{self.path}: round {report.round} of partner "
                            f"{report.partner_id} was reported differently before a restart"
                        )
                    continue  # committed before the platform crashed: reported once
                ledger.append(report)
                written += 1
        return written

    def record_empirical_audit(self, audit: PlatformEmpiricalAudit) -> str:
        """Append the release gate's audit (passed or not); return the entry's hash."""
        with Ledger.open(self.path, signing_key=self._key, owner=PLATFORM_OWNER) as ledger:
            return ledger.append(audit).hash

    def record_publish(
        self, *, run_id: str, published: PublishedModel, rounds: int, partners: tuple[str, ...]
    ) -> None:
        """One ``platform-publish`` per version; the same entry again (a resumed run
        re-publishing) is kept once, a different one for the version is refused."""
        body = PlatformPublish(
            run_id=run_id,
            model_version=published.version,
            weights_sha256=published.weights_sha256,
            card_sha256=published.card_sha256,
            rounds=rounds,
            partners=partners,
        )
        with Ledger.open(self.path, signing_key=self._key, owner=PLATFORM_OWNER) as ledger:
            for entry in ledger.entries:
                if entry.kind == PlatformPublish.KIND:
                    earlier = entry.parsed_body()
                    if earlier == body:
                        return
                    assert isinstance(earlier, PlatformPublish)
                    if earlier.model_version == body.model_version:
                        raise LedgerWriteRefused(
                            f"{self.path}: {body.model_version} was recorded with other values"
                        )
            ledger.append(body)


__all__ = ["PlatformLedger", "load_partner_keys"]
