"""What an integrity check or an audit found wrong, and where.

A finding names the file (ledger or model card), the entry's ``seq`` and line
where it has them, says what is wrong, and carries the offending entry so a
person can read it in the report without opening the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FindingCode(StrEnum):
    """Every kind of finding; the value is what reports and JSON show."""

    # integrity of one ledger
    LEDGER_MISSING = "ledger-missing"
    KEY_MISSING = "key-missing"
    TORN_TAIL = "torn-tail"
    UNPARSEABLE = "unparseable-entry"
    SCHEMA = "schema-invalid"
    SEQ = "seq-mismatch"
    CHAIN = "chain-break"
    SIGNATURE = "bad-signature"
    OWNER = "wrong-owner"
    KIND = "kind-not-allowed"
    # consistency inside a partner's ledger
    DUPLICATE_ROUND = "duplicate-round"
    EPSILON_DECREASED = "epsilon-decreased"
    BUDGET_CHANGED = "budget-changed"
    UNIT_CHANGED = "unit-changed"
    # privacy
    BUDGET_OVERRUN = "budget-overrun"
    EPSILON_UNDERSTATED = "epsilon-understated"
    # partner ledgers against the platform ledger
    RELEASE_UNREPORTED = "release-unreported"
    REPORT_WITHOUT_RELEASE = "report-without-release"
    REPORT_MISMATCH = "report-mismatch"
    # cards against the wire contract (fedctr.privacy.wire.CARD_FIELDS)
    UNDECLARED_CARD_FIELD = "undeclared-card-field"
    BASE_MODEL_DIVERGENCE = "base-model-divergence"
    # model cards against publish entries
    CARD_UNREADABLE = "card-unreadable"
    CARD_UNKNOWN_MODEL = "card-unknown-model"
    CARD_HASH_MISMATCH = "card-hash-mismatch"
    CARD_MISMATCH = "card-mismatch"
    CARD_EPSILON_MISMATCH = "card-epsilon-mismatch"
    PUBLISH_MISMATCH = "publish-mismatch"
    # the release gate's empirical audits (platform-empirical-audit entries) and the
    # card's privacy.empirical_audits[] statements of them
    EMPIRICAL_CLAIM_REFUTED = "empirical-claim-refuted"
    EMPIRICAL_EPSILON_MISMATCH = "empirical-epsilon-mismatch"
    EMPIRICAL_BOUND_MISMATCH = "empirical-bound-mismatch"
    EMPIRICAL_CONFIG_MISMATCH = "empirical-config-mismatch"
    EMPIRICAL_REFUTED_PUBLISHED = "empirical-refuted-published"
    CARD_EMPIRICAL_UNBACKED = "card-empirical-unbacked"
    CARD_EMPIRICAL_MISMATCH = "card-empirical-mismatch"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One thing wrong: ``code`` in ``source`` (a file name) at ``seq``/``line``."""

    code: FindingCode
    source: str
    message: str
    seq: int | None = None
    line: int | None = None
    entry: Mapping[str, Any] | None = None

    def where(self) -> str:
        """``platform.jsonl seq 4 (line 5)``-style location for messages and reports."""
        parts = [self.source]
        if self.seq is not None:
            parts.append(f"seq {self.seq}")
        if self.line is not None:
            parts.append(f"(line {self.line})")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "source": self.source,
            "seq": self.seq,
            "line": self.line,
            "message": self.message,
            "entry": dict(self.entry) if self.entry is not None else None,
        }

    def __str__(self) -> str:
        return f"[{self.code}] {self.where()}: {self.message}"


__all__ = ["Finding", "FindingCode"]
