"""Who may write what, and where ledgers and keys live on disk.

Directory convention shared by the nodes, the platform and ``fedctr audit``::

    ledgers/platform.jsonl        the platform's ledger (reports, publishes, release-gate audits)
    ledgers/<partner_id>.jsonl    one per partner (its releases)
    keys/platform.pub             Ed25519 public keys, SubjectPublicKeyInfo PEM
    keys/<partner_id>.pub

Owner names double as file names, hence the restricted identifier syntax; the
name ``platform`` is reserved.
"""

from __future__ import annotations

from pathlib import Path

from fedctr.privacy.ledger.bodies import EntryKind, ident

PLATFORM_OWNER = "platform"
LEDGER_SUFFIX = ".jsonl"
PUBLIC_KEY_SUFFIX = ".pub"
PLATFORM_KINDS: tuple[EntryKind, ...] = (
    "platform-report",
    "platform-publish",
    "platform-empirical-audit",
)
PARTNER_KINDS: tuple[EntryKind, ...] = ("partner-release", "partner-withheld")


def allowed_kinds(owner: str) -> tuple[EntryKind, ...]:
    """Entry kinds the ledger of ``owner`` may hold."""
    return PLATFORM_KINDS if owner == PLATFORM_OWNER else PARTNER_KINDS


def ledger_file(directory: str | Path, owner: str) -> Path:
    """``<directory>/<owner>.jsonl``."""
    return Path(directory) / f"{ident(owner, 'owner')}{LEDGER_SUFFIX}"


def public_key_file(directory: str | Path, owner: str) -> Path:
    """``<directory>/<owner>.pub``."""
    return Path(directory) / f"{ident(owner, 'owner')}{PUBLIC_KEY_SUFFIX}"


__all__ = [
    "LEDGER_SUFFIX",
    "PARTNER_KINDS",
    "PLATFORM_KINDS",
    "PLATFORM_OWNER",
    "PUBLIC_KEY_SUFFIX",
    "allowed_kinds",
    "ledger_file",
    "public_key_file",
]
