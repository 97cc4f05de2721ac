"""The demo's audit step: hand the auditor copies of ledgers, cards and public keys.

Mirrors the trust boundary: the auditor receives ledgers and public keys, never a
private key or a data file, in the layout ``fedctr.privacy.audit`` reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from fedctr.federation.workspace import Workspace
from fedctr.privacy.audit import audit_directories
from fedctr.privacy.ledger import PLATFORM_OWNER, ledger_file


def collect_audit_inputs(ws: Workspace, audit_dir: Path) -> tuple[Path, Path]:
    """Copy every ledger and public key into ``audit_dir``; returns (ledgers, keys)."""
    ledgers = audit_dir / "ledgers"
    keys = audit_dir / "keys"
    ledgers.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ws.auditor_keys, keys, dirs_exist_ok=True)
    if ws.platform_ledger().exists():
        shutil.copyfile(ws.platform_ledger(), ledger_file(ledgers, PLATFORM_OWNER))
    for pid in ws.partner_configs:
        src = ws.partner_dir(pid) / "ledger.jsonl"
        if src.exists():
            shutil.copyfile(src, ledger_file(ledgers, pid))
    return ledgers, keys


def run_demo_audit(ws: Workspace, audit_dir: Path, console: Console) -> int:
    """Audit the demo's federation; print the verdict and where the report is."""
    ledgers, keys = collect_audit_inputs(ws, audit_dir)
    result = audit_directories(ledgers_dir=ledgers, keys_dir=keys, registry_dir=ws.registry)
    report_html = audit_dir / "report.html"
    report_json = audit_dir / "report.json"
    from fedctr.privacy.audit import write_report

    write_report(result, report_html, report_json)
    colour = "green" if result.passed else "red"
    console.print(
        f"[bold {colour}]audit: {result.verdict}[/] — {len(result.findings)} finding(s); "
        f"report {report_html} (JSON: {report_json})"
    )
    for finding in result.findings[:10]:
        console.print(f"  [red]•[/] {finding}")
    return 0 if result.passed else 1


__all__ = ["collect_audit_inputs", "run_demo_audit"]
