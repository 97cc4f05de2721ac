"""Reading the audit's inputs: ledgers (verified on the way in) and model cards.

Nothing here raises on bad input: every problem becomes a :class:`Finding`, so the
audit reports all of them at once. A ledger body with a field the ledger schema does
not declare is a ``schema-invalid`` finding of :func:`verify_ledger`; the entry is then
left out of the cross-checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.privacy.audit.cards import CardClaims, CardInvalid, CardVerifier, card_claims
from fedctr.privacy.audit.contract import card_contract_findings
from fedctr.privacy.audit.result import InputFile
from fedctr.privacy.ledger import (
    Entry,
    Finding,
    FindingCode,
    LedgerEntryInvalid,
    LedgerUnreadable,
    read_ledger,
    verify_ledger,
)

B = TypeVar("B")


@dataclass(frozen=True, kw_only=True)
class Recorded(Generic[B]):
    """A parsed body with the entry and place it came from."""

    source: str
    entry: Entry
    body: B
    line: int | None

    def finding(self, code: FindingCode, message: str) -> Finding:
        return Finding(
            code=code,
            source=self.source,
            seq=self.entry.seq,
            line=self.line,
            message=message,
            entry=self.entry.to_dict(),
        )


@dataclass(frozen=True, kw_only=True)
class LoadedLedger:
    """A ledger's well-formed entries (typed) and the integrity findings about it."""

    owner: str
    source: str
    records: tuple[Recorded[Any], ...]
    findings: tuple[Finding, ...]
    input: InputFile


def load_ledger(
    path: Path, public_key: Ed25519PublicKey | None, *, owner: str, role: str
) -> LoadedLedger:
    """Read and verify the ledger of ``owner``; missing file or key become findings."""
    source = path.name
    findings: list[Finding] = []
    try:
        raw = path.read_bytes()
        read = read_ledger(path)
    except (OSError, LedgerUnreadable) as exc:
        finding = Finding(
            code=FindingCode.LEDGER_MISSING,
            source=source,
            message=f"the ledger of {owner!r} cannot be read ({exc}); nothing of it is verified",
        )
        return LoadedLedger(
            owner=owner,
            source=source,
            records=(),
            findings=(finding,),
            input=InputFile(role=role, name=source, sha256=None),
        )
    if public_key is None:
        findings.append(
            Finding(
                code=FindingCode.KEY_MISSING,
                source=source,
                message=f"no public key for {owner!r}: its signatures cannot be verified",
            )
        )
    findings += verify_ledger(read, public_key, owner=owner)
    records: list[Recorded[Any]] = []
    for entry, line in zip(read.entries, read.lines, strict=True):
        try:
            body = entry.parsed_body()
        except LedgerEntryInvalid:
            continue  # reported by verify_ledger as schema-invalid
        records.append(Recorded(source=source, entry=entry, body=body, line=line))
    return LoadedLedger(
        owner=owner,
        source=source,
        records=tuple(records),
        findings=tuple(findings),
        input=InputFile(
            role=role,
            name=source,
            sha256=hashlib.sha256(raw).hexdigest(),
            entries=len(read.entries),
        ),
    )


def card_source(version_dir: Path) -> str:
    """A short, readable name of a card: ``<parent>/<version>/card.json``."""
    return f"{version_dir.parent.name}/{version_dir.name}/card.json"


def load_cards(
    version_dirs: Sequence[Path], verifier: CardVerifier | None
) -> tuple[list[CardClaims], list[Finding], list[InputFile]]:
    """Verify and parse each card; unverifiable or malformed cards become findings.

    Every leaf of an authentic card is checked against the wire contract first, so a
    card that is also malformed still has its undeclared values reported.
    """
    claims: list[CardClaims] = []
    findings: list[Finding] = []
    inputs: list[InputFile] = []
    for version_dir in version_dirs:
        source = card_source(version_dir)
        try:
            if verifier is None:
                raise CardInvalid("no card verifier was given, so no card can be trusted")
            card = verifier(version_dir)
            if not isinstance(card, Mapping):
                raise CardInvalid("the model card is not a JSON object")
            findings += card_contract_findings(card, source=source)
            claim = card_claims(card, source=source, version_dir=version_dir)
        except Exception as exc:  # the verifier is the caller's: any failure is a finding
            findings.append(
                Finding(
                    code=FindingCode.CARD_UNREADABLE,
                    source=source,
                    message=f"model card not verified or not readable: {exc}",
                )
            )
            inputs.append(InputFile(role="model-card", name=source, sha256=None))
            continue
        claims.append(claim)
        inputs.append(InputFile(role="model-card", name=source, sha256=claim.card_sha256))
    return claims, findings, inputs


__all__ = ["LoadedLedger", "Recorded", "card_source", "load_cards", "load_ledger"]
