"""Ledger errors: each subclass means one thing a caller can act on."""

from fedctr.privacy.errors import PrivacyError


class LedgerError(PrivacyError):
    """Base class of ledger errors."""


class LedgerEntryInvalid(LedgerError, ValueError):
    """An entry or its body is malformed: wrong type, missing or unknown field, bad value."""


class LedgerUnreadable(LedgerError, OSError):
    """The ledger file cannot be read at all (missing, a directory, permission denied)."""


class LedgerTornTail(LedgerError):
    """The last line is incomplete (a crash mid-write); appending is refused until repaired.

    Entries are written before the update they describe is sent, so a torn entry
    records a release that never happened: :func:`fedctr.privacy.ledger.repair_torn_tail`
    moves its bytes aside and truncates the file.
    """


class LedgerCorrupt(LedgerError):
    """Earlier entries are unparseable, unsigned, out of chain or not the owner's."""


class LedgerLocked(LedgerError):
    """Another process holds this ledger open for writing."""


class LedgerWriteRefused(LedgerError, ValueError):
    """This entry cannot go into this ledger (wrong kind for the owner, duplicate round)."""


__all__ = [
    "LedgerCorrupt",
    "LedgerEntryInvalid",
    "LedgerError",
    "LedgerLocked",
    "LedgerTornTail",
    "LedgerUnreadable",
    "LedgerWriteRefused",
]
