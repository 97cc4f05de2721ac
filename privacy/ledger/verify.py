"""Integrity of one ledger: every line parsed, signed by its owner, in one unbroken chain.

An edit breaks the entry's signature and the next entry's ``prev_hash``; a dropped,
inserted or moved entry breaks ``seq`` and ``prev_hash``; a wrong key breaks the
signature. Dropping the *last* entries leaves a shorter valid chain: only the
other side's ledger (the platform's reports) can reveal that, which the audit checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.privacy.ledger.bodies import PartnerRelease, PartnerWithheld
from fedctr.privacy.ledger.entry import GENESIS_HASH, Entry, verify_entry
from fedctr.privacy.ledger.errors import LedgerEntryInvalid
from fedctr.privacy.ledger.findings import Finding, FindingCode
from fedctr.privacy.ledger.layout import allowed_kinds
from fedctr.privacy.ledger.reader import LedgerRead
from fedctr.privacy.signing import SignatureInvalid, key_id


def verify_chain(
    entries: Sequence[Entry],
    public_key: Ed25519PublicKey | None,
    *,
    source: str,
    owner: str,
    lines: Sequence[int] | None = None,
) -> list[Finding]:
    """Findings about ``entries`` (in file order) of the ledger of ``owner``.

    With ``public_key=None`` signatures are not checked (the caller reports the
    missing key once); everything else is.
    """
    findings: list[Finding] = []
    prev: Entry | None = None
    for index, entry in enumerate(entries):

        def found(
            code: FindingCode, message: str, entry: Entry = entry, index: int = index
        ) -> None:
            findings.append(
                Finding(
                    code=code,
                    source=source,
                    seq=entry.seq,
                    line=lines[index] if lines is not None else None,
                    message=message,
                    entry=entry.to_dict(),
                )
            )

        if prev is None:
            if entry.seq != 0:
                found(FindingCode.SEQ, f"the ledger starts at seq {entry.seq}, not 0")
        elif entry.seq > prev.seq + 1:
            missing = entry.seq - prev.seq - 1
            found(
                FindingCode.SEQ,
                f"seq {entry.seq} follows seq {prev.seq}: {missing} entr"
                f"{'y is' if missing == 1 else 'ies are'} missing",
            )
        elif entry.seq <= prev.seq:
            found(
                FindingCode.SEQ,
                f"seq {entry.seq} follows seq {prev.seq}: entries are out of order or repeated",
            )

        expected = GENESIS_HASH if prev is None else prev.hash
        if entry.prev_hash != expected:
            after = "the genesis value" if prev is None else f"the entry before it (seq {prev.seq})"
            found(
                FindingCode.CHAIN,
                f"prev_hash does not match {after}: an entry was edited, dropped, "
                "inserted or moved",
            )

        if public_key is not None:
            try:
                verify_entry(entry, public_key)
            except SignatureInvalid:
                found(
                    FindingCode.SIGNATURE,
                    f"signature does not verify with {owner}'s public key "
                    f"(key id {key_id(public_key)}, entry names signer {entry.signer}): "
                    "the entry was edited or signed with another key",
                )

        if entry.owner != owner:
            found(FindingCode.OWNER, f"entry owner {entry.owner!r} in the ledger of {owner!r}")
        if entry.kind not in allowed_kinds(owner):
            found(FindingCode.KIND, f"a {entry.kind!r} entry cannot be in the ledger of {owner!r}")
        try:
            body = entry.parsed_body()
        except LedgerEntryInvalid as exc:
            found(FindingCode.SCHEMA, f"malformed {entry.kind} body: {exc}")
        else:
            if isinstance(body, PartnerRelease | PartnerWithheld) and body.partner_id != owner:
                found(
                    FindingCode.OWNER,
                    f"release names partner {body.partner_id!r} in the ledger of {owner!r}",
                )
        prev = entry
    return findings


def verify_ledger(
    read: LedgerRead, public_key: Ed25519PublicKey | None, *, owner: str
) -> list[Finding]:
    """Findings about a whole ledger file: damaged lines, a torn tail, and the chain."""
    source = read.path.name
    findings = [
        Finding(
            code=FindingCode.UNPARSEABLE,
            source=source,
            line=bad.line,
            message=f"line {bad.line} is not a well-formed entry: {bad.reason}",
        )
        for bad in read.bad_lines
    ]
    findings += verify_chain(read.entries, public_key, source=source, owner=owner, lines=read.lines)
    if read.torn_tail is not None:
        tail = read.torn_tail
        findings.append(
            Finding(
                code=FindingCode.TORN_TAIL,
                source=source,
                line=tail.line,
                message=(
                    f"the last line ({tail.length} bytes at offset {tail.offset}) is incomplete: "
                    "a write was interrupted; repair the ledger to move it aside"
                ),
            )
        )
    return findings


__all__ = ["verify_chain", "verify_ledger"]
