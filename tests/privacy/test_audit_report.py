"""Spec of the audit report and CLI: self-contained HTML with verdict and plots, JSON for
machines, exit codes; and the HTML as a person sees it, rendered by headless Chromium."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from fedctr.privacy.audit import (
    AuditResult,
    audit_directories,
    audit_main,
    privacy_statement,
    render_html,
    report_dict,
    write_report,
)
from fedctr.privacy.audit.plots import BUDGET_COLOR, CLAIMED_COLOR, PLD_COLOR
from fedctr.privacy.budget import PrivacyBudget
from fedctr.privacy.ledger import Finding, FindingCode
from fedctr.privacy.unit import UnitOfPrivacy
from fedctr.privacy.wire import (
    CARD_FIELDS,
    ERROR_REPLY_FIELDS,
    NOT_SENT,
    SECAGG_REPLY_FIELDS,
    TRAIN_REPLY_FIELDS,
    FieldClass,
    Problem,
)
from tests.support.audit_run import SyntheticPartner, SyntheticRun, write_synthetic_run
from tests.support.browser import chromium_or_skip, near, read_png_rows, screenshot

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BUDGET = PrivacyBudget(epsilon=1.0, delta=1e-5)
PASS_RGB = (0x1A, 0x7F, 0x37)
FAIL_RGB = (0xCF, 0x22, 0x2E)


def partners(globex_scale: float) -> list[SyntheticPartner]:
    return [
        SyntheticPartner(
            partner_id="acme",
            noise_multiplier=2.5,
            sample_rate=0.02,
            steps_per_round=100,
            budget=BUDGET,
        ),
        SyntheticPartner(
            partner_id="globex",
            noise_multiplier=3.0,
            sample_rate=0.02,
            steps_per_round=100,
            budget=BUDGET,
            accountant="prv",
            epsilon_scale=globex_scale,
        ),
    ]


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> SyntheticRun:
    return write_synthetic_run(tmp_path_factory.mktemp("honest"), partners=partners(1.0), rounds=3)


@pytest.fixture(scope="module")
def understating(tmp_path_factory) -> SyntheticRun:
    return write_synthetic_run(tmp_path_factory.mktemp("under"), partners=partners(0.8), rounds=3)


def audit(run: SyntheticRun) -> AuditResult:
    return audit_directories(
        ledgers_dir=run.ledgers_dir, keys_dir=run.keys_dir, registry_dir=run.registry_dir
    )


def cli(run: SyntheticRun, out: Path) -> int:
    return audit_main(
        [
            "--ledgers",
            str(run.ledgers_dir),
            "--keys",
            str(run.keys_dir),
            "--registry",
            str(run.registry_dir),
            "--out",
            str(out),
        ]
    )


# ---- HTML and JSON ------------------------------------------------------------------------------
def test_html_report_is_self_contained_with_verdict_plots_statement_and_lineage(honest):
    """No scripts, no external resources; one plot per partner; NIST-style statement."""
    page = render_html(audit(honest), generated_at=WHEN)

    assert 'data-testid="verdict" data-verdict="PASS"' in page
    assert 'data-testid="epsilon-plot-acme"' in page
    assert 'data-testid="epsilon-plot-globex"' in page
    assert "<script" not in page.lower()
    assert " src=" not in page and " href=" not in page
    assert page.count("http") == page.count('xmlns="http://www.w3.org/2000/svg"')
    for text in ("Unit of privacy", "one row of a partner", "What this guarantee does not cover"):
        assert text in page
    assert "v0001-" in page  # lineage: the published version
    assert "2026-01-02T03:04:05+00:00" in page


def test_failing_report_lists_each_finding_with_its_entry(understating):
    """Verdict FAIL, every finding in the table with where it is and the entry itself."""
    result = audit(understating)
    page = render_html(result, generated_at=WHEN)

    assert 'data-verdict="FAIL"' in page
    assert len(result.findings) == 3
    for finding in result.findings:
        assert finding.where() in page
    assert page.count("<details><summary>entry</summary>") == 3


def test_report_escapes_everything_it_quotes():
    """Text from ledgers and cards is data, never markup."""
    result = AuditResult(
        findings=(
            Finding(
                code=FindingCode.CARD_UNREADABLE,
                source="models/<img src=x>/card.json",
                message="<script>alert(1)</script>",
            ),
        ),
        partners=(),
        lineage=(),
        inputs=(),
        tolerance=0.01,
    )

    page = render_html(result, generated_at=WHEN)

    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_json_report_is_machine_readable(understating, tmp_path):
    """The JSON carries the verdict, the findings, every release's three epsilons and the
    privacy statement."""
    write_report(audit(understating), tmp_path / "a.html", tmp_path / "a.json", generated_at=WHEN)

    report = json.loads((tmp_path / "a.json").read_text())

    assert report["verdict"] == "FAIL" and report["passed"] is False
    assert {f["code"] for f in report["findings"]} == {"epsilon-understated"}
    globex = next(p for p in report["partners"] if p["partner_id"] == "globex")
    release = globex["releases"][0]
    assert release["epsilon_claimed"] < release["epsilon_independent_pld"]
    assert release["reference"] == "pld"
    assert report["privacy_statement"]["unit_of_privacy"].startswith("one example")
    assert report["schema_version"] == 4
    assert "num_examples" not in release and "num_examples" not in json.dumps(report)
    assert {i["role"] for i in report["inputs"]} == {
        "platform-ledger",
        "partner-ledger",
        "model-card",
    }


def table(page: str, testid: str) -> str:
    """The HTML of the table with ``data-testid=testid``."""
    start = page.index(f'data-testid="{testid}"')
    return page[start : page.index("</table>", start)]


def test_the_statement_lists_the_wire_contract_not_a_copy_of_it(honest):
    """Every NOT_SENT item, every declared DP release and every public-by-declaration value
    of fedctr.privacy.wire is in the statement (JSON and HTML), in the contract's order."""
    result = audit(honest)
    statement = report_dict(result, generated_at=WHEN)["privacy_statement"]
    page = render_html(result, generated_at=WHEN)
    every = (
        *TRAIN_REPLY_FIELDS,
        *ERROR_REPLY_FIELDS,
        *SECAGG_REPLY_FIELDS,
        *CARD_FIELDS,
        *NOT_SENT,
    )

    for name, testid, cls in (
        ("not_sent", "contract-not-sent", FieldClass.NOT_SENT),
        ("dp_releases", "contract-dp-releases", FieldClass.DP_RELEASE),
        ("public_by_declaration", "contract-public", FieldClass.PUBLIC),
    ):
        declared = [(f.record, f.key, f.accounting) for f in every if f.field_class == cls]
        listed = [(v["record"], v["key"], v["covered_by"]) for v in statement[name]]
        assert listed == declared and declared
        html_table = table(page, testid)
        for _, key, why in declared:
            assert f"<code>{html.escape(key)}</code>" in html_table
            assert html.escape(why) in html_table
    assert [v["key"] for v in statement["not_sent"]] == [f.key for f in NOT_SENT]
    dp = {(v["record"], v["key"]) for v in statement["dp_releases"]}
    assert {("arrays", "*"), ("report", "update-hash"), ("card", "weights.sha256")} <= dp


def test_the_statement_states_relation_unit_caveats_and_no_row_count_claim(honest):
    """Neighbour relation and unit from fedctr.privacy.unit; the caveats disclosed without DP;
    delta against 1/n left to the partner's node, as the audit cannot see n."""
    statement = privacy_statement(audit(honest))
    page = render_html(audit(honest), generated_at=WHEN)

    assert UnitOfPrivacy.example().neighbour_relation in statement.neighbouring
    assert statement.unit_of_privacy.startswith("one example")
    disclosed = dict(statement.disclosed_without_dp)
    usable = disclosed["Whether a partner's data file was usable"]
    assert all(f.key in usable for f in ERROR_REPLY_FIELDS)
    assert Problem.MISSING_COLUMN.value in usable
    assert "rounds_contributed" in disclosed["Which rounds each partner joined"]
    assert "arrival time" in disclosed["When a reply arrives"]
    assert "not covered" in disclosed["When a reply arrives"]
    assert "partner's node checks it locally" in statement.delta_check
    for topic, why in (*statement.disclosed_without_dp, *statement.not_covered):
        assert html.escape(topic) in page and html.escape(why) in page
    assert "1/n for n=" not in page and "num_examples" not in page


def test_the_statement_lists_each_partners_dp_releases_with_their_accounting(honest):
    """Per partner: every release with sigma, q, steps, C, accountant and the recomputed
    epsilons, as the ledger and the independent accountant give them."""
    result = audit(honest)
    statement = report_dict(result, generated_at=WHEN)["privacy_statement"]
    page = render_html(result, generated_at=WHEN)

    for summary, guarantee in zip(result.partners, statement["partners"], strict=True):
        assert guarantee["partner_id"] == summary.partner_id
        releases = guarantee["releases"]
        assert len(releases) == len(summary.rows) == 3
        for row, release in zip(summary.rows, releases, strict=True):
            assert release["update_hash"] == row.update_hash
            assert release["mechanism"] == {
                "name": "subsampled Gaussian (DP-SGD)",
                "noise_multiplier": row.noise_multiplier,
                "sample_rate": row.sample_rate,
                "sampling": "poisson",
                "steps": row.steps,
                "max_grad_norm": row.max_grad_norm,
                "selection": None,
            }
            assert release["unit_of_privacy"] == "example"
            assert release["accountant"] == row.accountant
            assert release["epsilon_independent_rdp"] == row.independent_rdp
            assert release["epsilon_independent_pld"] == row.independent_pld
            assert release["epsilon_claimed"] == row.claimed
        html_table = table(page, f"dp-releases-{summary.partner_id}")
        assert html_table.count("<tr>") == 1 + 3
        assert f"{summary.rows[-1].independent_rdp:.4f}" in html_table


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_exit_codes_pass_findings_and_bad_input(honest, understating, tmp_path, capsys):
    """0 with no finding, 1 with any, 2 when the input cannot be audited."""
    assert cli(honest, tmp_path / "ok") == 0
    assert (tmp_path / "ok" / "audit.html").is_file() and (tmp_path / "ok" / "audit.json").is_file()
    assert "audit verdict: PASS" in capsys.readouterr().out

    assert cli(understating, tmp_path / "bad") == 1
    assert "[epsilon-understated] globex.jsonl seq 0" in capsys.readouterr().out

    missing = audit_main(
        ["--ledgers", str(tmp_path / "nope"), "--keys", str(tmp_path), "--out", str(tmp_path)]
    )
    assert missing == 2
    assert audit_main(["--bogus"]) == 2


# ---- as a person sees it -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("fixture", "verdict_rgb"), [("honest", PASS_RGB), ("understating", FAIL_RGB)]
)
def test_chromium_screenshot_shows_the_verdict_banner_and_one_plot_per_partner(
    fixture, verdict_rgb, request, tmp_path
):
    """Headless Chromium renders the report: a full-width banner in the verdict's colour at
    the top, and side by side two plots, each with its claimed line and its budget line."""
    chromium = chromium_or_skip()
    run = request.getfixturevalue(fixture)
    write_report(audit(run), tmp_path / "audit.html", tmp_path / "audit.json", generated_at=WHEN)
    png = tmp_path / "audit.png"

    screenshot(chromium, tmp_path / "audit.html", png, tmp_path / "profile")
    pixels = read_png_rows(png, rows=1100)

    banner = pixels[8:100, :1200]
    assert (np.abs(banner.astype(int) - verdict_rgb).max(axis=-1) <= 8).mean() > 0.8
    plots = pixels[300:1100]
    for half in (plots[:, :640], plots[:, 640:]):
        assert near(half, CLAIMED_COLOR).sum() > 150
        assert near(half, BUDGET_COLOR).sum() > 150
        assert near(half, PLD_COLOR).sum() > 50
