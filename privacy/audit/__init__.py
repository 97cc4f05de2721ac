"""The compliance audit: signatures, chains, cross-checks, independent epsilon, report."""

from privacy.audit.audit import run_audit
from privacy.audit.directories import AuditInputError, audit_directories
from privacy.audit.result import AuditResult, EpsilonRow, InputFile, LineageRow, PartnerSummary

__all__ = [
    "AuditInputError",
    "AuditResult",
    "EpsilonRow",
    "InputFile",
    "LineageRow",
    "PartnerSummary",
    "audit_directories",
    "run_audit",
]
