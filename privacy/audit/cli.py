"""``fedctr audit``: verify ledgers and model cards, write the HTML and JSON reports.

Exit codes: 0 no finding, 1 at least one finding, 2 unusable input (missing
directory, unreadable key file, bad option).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from fedctr.privacy.audit.cards import CardVerifier
from fedctr.privacy.audit.directories import AuditInputError, audit_directories
from fedctr.privacy.audit.report import write_report
from fedctr.privacy.errors import InvalidPrivacyParameter

logger = logging.getLogger(__name__)

HTML_REPORT = "audit.html"
JSON_REPORT = "audit.json"
EXIT_PASS, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def build_audit_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the audit's options to ``parser`` (e.g. a ``fedctr audit`` subparser)."""
    parser = parser or argparse.ArgumentParser(
        prog="fedctr audit", description="Audit privacy ledgers and published model cards."
    )
    parser.add_argument(
        "--ledgers",
        type=Path,
        required=True,
        help="directory with platform.jsonl and <partner_id>.jsonl",
    )
    parser.add_argument(
        "--keys", type=Path, required=True, help="directory with platform.pub and <partner_id>.pub"
    )
    parser.add_argument(
        "--registry", type=Path, default=None, help="model registry (every **/card.json is audited)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help=f"where to write {HTML_REPORT} and {JSON_REPORT}"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.01,
        help="relative slack of claimed vs independent epsilon (default 0.01)",
    )
    return parser


def run_audit_command(
    args: argparse.Namespace, *, card_verifier: CardVerifier | None = None
) -> int:
    """Run an audit from parsed options; print the verdict and the report paths."""
    try:
        result = audit_directories(
            ledgers_dir=args.ledgers,
            keys_dir=args.keys,
            registry_dir=args.registry,
            tolerance=args.tolerance,
            card_verifier=card_verifier,
        )
    except (AuditInputError, InvalidPrivacyParameter) as exc:
        logger.error("audit not run: %s", exc)
        print(f"fedctr audit: {exc}")
        return EXIT_USAGE
    html_path, json_path = args.out / HTML_REPORT, args.out / JSON_REPORT
    write_report(result, html_path, json_path)
    lines = [f"audit verdict: {result.verdict} ({len(result.findings)} findings)"]
    lines += [f"  {finding}" for finding in result.findings[:20]]
    if len(result.findings) > 20:
        lines.append(f"  ... and {len(result.findings) - 20} more in the report")
    lines.append(f"report: {html_path}")
    lines.append(f"json:   {json_path}")
    print("\n".join(lines))
    return EXIT_PASS if result.passed else EXIT_FINDINGS


def audit_main(
    argv: Sequence[str] | None = None, *, card_verifier: CardVerifier | None = None
) -> int:
    """Entry point: ``fedctr audit --ledgers DIR --keys DIR [--registry DIR] --out DIR``.

    ``card_verifier`` overrides the stand-alone ``card.sig`` check (pass the registry's
    ``verify_card`` bound to the platform key).
    """
    parser = build_audit_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad options, 0 on --help
        return int(exc.code or 0)
    return run_audit_command(args, card_verifier=card_verifier)


__all__ = [
    "EXIT_FINDINGS",
    "EXIT_PASS",
    "EXIT_USAGE",
    "HTML_REPORT",
    "JSON_REPORT",
    "audit_main",
    "build_audit_parser",
    "run_audit_command",
]
