"""The compliance audit: signatures, chains, cross-checks, independent epsilon, report."""

from fedctr.privacy.audit.audit import run_audit
from fedctr.privacy.audit.cards import CardClaims, CardInvalid, CardVerifier, verify_signed_card
from fedctr.privacy.audit.cli import audit_main, build_audit_parser, run_audit_command
from fedctr.privacy.audit.directories import AuditInputError, audit_directories
from fedctr.privacy.audit.recompute import IndependentEpsilon, independent_epsilons
from fedctr.privacy.audit.report import render_html, report_dict, write_report
from fedctr.privacy.audit.result import (
    AuditResult,
    EpsilonRow,
    InputFile,
    LineageRow,
    PartnerSummary,
)
from fedctr.privacy.audit.statement import PrivacyStatement, privacy_statement

__all__ = [
    "AuditInputError",
    "AuditResult",
    "CardClaims",
    "CardInvalid",
    "CardVerifier",
    "EpsilonRow",
    "IndependentEpsilon",
    "InputFile",
    "LineageRow",
    "PartnerSummary",
    "PrivacyStatement",
    "audit_directories",
    "audit_main",
    "build_audit_parser",
    "independent_epsilons",
    "privacy_statement",
    "render_html",
    "report_dict",
    "run_audit",
    "run_audit_command",
    "verify_signed_card",
    "write_report",
]
