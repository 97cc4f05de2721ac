"""Append-only, signed, hash-chained privacy ledgers of partners and the platform.

Writers: :meth:`Ledger.open` then :meth:`Ledger.append` with a typed body.
Readers (the platform, the audit): :func:`read_ledger` then :func:`verify_ledger`.
"""

from fedctr.privacy.ledger.bodies import (
    BODY_TYPES,
    ENTRY_KINDS,
    EntryKind,
    LedgerBody,
    PartnerRelease,
    PartnerWithheld,
    PlatformEmpiricalAudit,
    PlatformPublish,
    PlatformReport,
    parse_body,
)
from fedctr.privacy.ledger.entry import (
    GENESIS_HASH,
    SCHEMA_VERSION,
    Entry,
    make_entry,
    verify_entry,
)
from fedctr.privacy.ledger.errors import (
    LedgerCorrupt,
    LedgerEntryInvalid,
    LedgerError,
    LedgerLocked,
    LedgerTornTail,
    LedgerUnreadable,
    LedgerWriteRefused,
)
from fedctr.privacy.ledger.findings import Finding, FindingCode
from fedctr.privacy.ledger.layout import (
    PLATFORM_OWNER,
    allowed_kinds,
    ledger_file,
    public_key_file,
)
from fedctr.privacy.ledger.reader import BadLine, LedgerRead, TornTail, read_ledger
from fedctr.privacy.ledger.verify import verify_chain, verify_ledger
from fedctr.privacy.ledger.writer import TORN_SUFFIX, Ledger, repair_torn_tail

__all__ = [
    "BODY_TYPES",
    "ENTRY_KINDS",
    "GENESIS_HASH",
    "PLATFORM_OWNER",
    "SCHEMA_VERSION",
    "TORN_SUFFIX",
    "BadLine",
    "Entry",
    "EntryKind",
    "Finding",
    "FindingCode",
    "Ledger",
    "LedgerBody",
    "LedgerCorrupt",
    "LedgerEntryInvalid",
    "LedgerError",
    "LedgerLocked",
    "LedgerRead",
    "LedgerTornTail",
    "LedgerUnreadable",
    "LedgerWriteRefused",
    "PartnerRelease",
    "PartnerWithheld",
    "PlatformEmpiricalAudit",
    "PlatformPublish",
    "PlatformReport",
    "TornTail",
    "allowed_kinds",
    "ledger_file",
    "make_entry",
    "parse_body",
    "public_key_file",
    "read_ledger",
    "repair_torn_tail",
    "verify_chain",
    "verify_entry",
    "verify_ledger",
]
