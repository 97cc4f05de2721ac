"""Spec of the compliance audit: an honest run passes; every kind of tampering fails,
naming the file and entry that caused it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from privacy.audit import AuditResult, audit_directories
from privacy.audit.cards import CARD_FILE, CARD_SIGNATURE_FILE, WEIGHTS_FILE
from privacy.audit.synthetic import SyntheticPartner, SyntheticRun, write_synthetic_run
from privacy.budget import PrivacyBudget
from privacy.ledger import GENESIS_HASH, Entry, make_entry, parse_body, read_ledger
from privacy.signing import canonical_json, generate_signing_key, sign

BUDGET = PrivacyBudget(epsilon=4.0, delta=1e-5)
ACME = SyntheticPartner(
    partner_id="acme", noise_multiplier=2.5, sample_rate=0.02, steps_per_round=100, budget=BUDGET
)
GLOBEX = SyntheticPartner(
    partner_id="globex",
    noise_multiplier=3.0,
    sample_rate=0.02,
    steps_per_round=100,
    budget=BUDGET,
    accountant="prv",
)


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> SyntheticRun:
    return write_synthetic_run(tmp_path_factory.mktemp("honest"), partners=[ACME, GLOBEX], rounds=3)


@pytest.fixture
def run(honest, tmp_path) -> SyntheticRun:
    """A private copy of the honest run, to tamper with."""
    root = tmp_path / "run"
    shutil.copytree(honest.root, root)
    return SyntheticRun(
        root=root,
        ledgers_dir=root / "ledgers",
        keys_dir=root / "keys",
        registry_dir=root / "registry",
        card_dir=root / honest.card_dir.relative_to(honest.root),
        run_id=honest.run_id,
        partner_keys=honest.partner_keys,
        platform_key=honest.platform_key,
    )


def audit(run: SyntheticRun, **kwargs: Any) -> AuditResult:
    return audit_directories(
        ledgers_dir=run.ledgers_dir, keys_dir=run.keys_dir, registry_dir=run.registry_dir, **kwargs
    )


def found(result: AuditResult) -> set[tuple[str, str, int | None]]:
    return {(str(f.code), f.source, f.seq) for f in result.findings}


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, key, owner: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a whole ledger consistently, as its owner could: edit bodies, re-sign, re-chain."""
    prev, out = GENESIS_HASH, []
    for entry in read_ledger(path).entries:
        body = dict(entry.body)
        change(body)
        new = make_entry(
            seq=entry.seq,
            owner=owner,
            body=parse_body(entry.kind, body),
            prev_hash=prev,
            signing_key=key,
        )
        out.append(new.canonical_bytes() + b"\n")
        prev = new.hash
    path.write_bytes(b"".join(out))


def resign_card(run: SyntheticRun, card_dir: Path, change: Callable[[dict[str, Any]], None]):
    card = json.loads((card_dir / CARD_FILE).read_text())
    change(card)
    (card_dir / CARD_FILE).write_text(json.dumps(card))
    sig = {"signature": sign(run.platform_key, canonical_json(card))}
    (card_dir / CARD_SIGNATURE_FILE).write_text(json.dumps(sig))


# ---- the honest run -------------------------------------------------------------------------
def test_an_untampered_run_passes(honest):
    """Signed, chained, consistent ledgers and card: no finding, verdict PASS."""
    result = audit(honest)

    assert result.findings == ()
    assert result.passed and result.verdict == "PASS"
    assert [p.partner_id for p in result.partners] == ["acme", "globex"]
    assert [len(p.rows) for p in result.partners] == [3, 3]
    assert [m.partners for m in result.lineage] == [("acme", "globex")]
    assert result.lineage[0].card_source is not None


def test_independent_recomputation_agrees_with_the_training_time_claims(honest):
    """Opacus RDP claims match dp_accounting RDP within 1%; PRV claims are >= PLD."""
    acme, globex = audit(honest).partners

    for row in acme.rows:
        assert row.reference == "rdp"
        assert row.claimed == pytest.approx(row.independent_rdp, rel=0.01)
        assert row.independent_pld < row.claimed  # PLD is tighter: not a finding
        assert row.tightest == "dp_accounting PLD"
    for row in globex.rows:
        assert row.reference == "pld"
        assert row.independent_pld <= row.claimed * 1.01


def test_the_synthetic_card_verifies_with_the_registry_reader(honest):
    """The card format used here is the registry's: its own verifier accepts it."""
    from server.registry.reader import verify_card

    result = audit(
        honest, card_verifier=partial(verify_card, public_key=honest.platform_key.public_key())
    )

    assert result.passed


# ---- tampering with partner ledgers ----------------------------------------------------------
def test_an_edited_epsilon_is_caught_by_signature_chain_and_platform(run):
    """Lower acme's round-2 epsilon in place: its entry and the next one are named."""
    path = run.ledger("acme")
    content = lines(path)
    entry = json.loads(content[1])
    entry["body"]["epsilon_after"] = 0.01
    content[1] = canonical_json(entry) + b"\n"
    path.write_bytes(b"".join(content))

    result = audit(run)

    assert not result.passed
    assert {
        ("bad-signature", "acme.jsonl", 1),
        ("chain-break", "acme.jsonl", 2),
        ("report-mismatch", "acme.jsonl", 1),
        ("epsilon-understated", "acme.jsonl", 1),
    } <= found(result)


def test_a_dropped_entry_is_caught_by_chain_and_platform(run):
    """Drop acme's round-2 release: a gap at seq 2, and the platform's report has no release."""
    path = run.ledger("acme")
    content = lines(path)
    path.write_bytes(content[0] + content[2])
    report_seq = _platform_seq(run, "platform-report", partner_id="acme", round=2)

    result = audit(run)

    assert {
        ("seq-mismatch", "acme.jsonl", 2),
        ("chain-break", "acme.jsonl", 2),
        ("report-without-release", "platform.jsonl", report_seq),
    } <= found(result)


def test_dropping_the_last_entry_is_caught_by_the_platform_ledger(run):
    """A shorter, still valid chain: only the platform's report reveals the missing release."""
    path = run.ledger("acme")
    path.write_bytes(b"".join(lines(path)[:-1]))
    report_seq = _platform_seq(run, "platform-report", partner_id="acme", round=3)

    result = audit(run)

    assert ("report-without-release", "platform.jsonl", report_seq) in found(result)
    assert not any(f.source == "acme.jsonl" and f.code == "chain-break" for f in result.findings)


def test_a_ledger_re_signed_with_a_wrong_key_fails_every_entry(run):
    """A forger re-signs and re-chains acme's ledger with its own key."""
    rewrite(run.ledger("acme"), generate_signing_key(), "acme", lambda body: None)

    result = audit(run)

    assert {("bad-signature", "acme.jsonl", s) for s in (0, 1, 2)} <= found(result)


def test_a_partner_rewriting_its_own_history_is_caught_by_platform_and_recomputation(run):
    """acme re-signs its whole ledger with its real key and lower epsilons: the chain is
    valid, but the platform's copies and the independent accountant disagree."""

    def halve(body: dict[str, Any]) -> None:
        body["epsilon_after"] = body["epsilon_after"] / 2

    rewrite(run.ledger("acme"), run.partner_keys["acme"], "acme", halve)

    result = audit(run)

    codes = found(result)
    assert not any(c[0] in ("bad-signature", "chain-break") for c in codes)
    for seq in (0, 1, 2):
        assert ("report-mismatch", "acme.jsonl", seq) in codes
        assert ("epsilon-understated", "acme.jsonl", seq) in codes


def test_reordered_platform_entries_are_caught(run):
    """Swap two platform entries: seq and chain findings name both."""
    path = run.ledger("platform")
    content = lines(path)
    content[1], content[2] = content[2], content[1]
    path.write_bytes(b"".join(content))

    result = audit(run)

    assert {
        ("seq-mismatch", "platform.jsonl", 2),
        ("chain-break", "platform.jsonl", 2),
        ("seq-mismatch", "platform.jsonl", 1),
        ("chain-break", "platform.jsonl", 1),
    } <= found(result)


def test_a_torn_tail_is_a_finding(run):
    """An interrupted write left unrepaired is reported, with its line."""
    with run.ledger("globex").open("ab") as fh:
        fh.write(b'{"body":')

    result = audit(run)

    assert [(str(f.code), f.source, f.line) for f in result.findings] == [
        ("torn-tail", "globex.jsonl", 4)
    ]


def test_missing_keys_and_ledgers_are_findings(run):
    """No key: signatures unverifiable. No ledger: the platform's reports are unbacked."""
    (run.keys_dir / "acme.pub").unlink()
    run.ledger("globex").unlink()

    codes = {(c, s) for c, s, _ in found(audit(run))}

    assert ("key-missing", "acme.jsonl") in codes
    assert ("ledger-missing", "globex.jsonl") in codes
    assert ("report-without-release", "platform.jsonl") in codes


# ---- model cards ------------------------------------------------------------------------------
def test_a_card_for_a_model_the_ledger_never_saw_fails(run):
    """A validly signed card whose weights the platform ledger never published."""
    rogue = run.registry_dir / "models" / "v0002-rogue"
    shutil.copytree(run.card_dir, rogue)
    (rogue / WEIGHTS_FILE).write_bytes(b"other weights")

    def other_model(card: dict[str, Any]) -> None:
        card["weights"]["sha256"] = "e" * 64
        card["model_version"] = "v0002-rogue"

    resign_card(run, rogue, other_model)

    result = audit(run)

    assert ("card-unknown-model", "models/v0002-rogue/card.json", None) in found(result)


def test_a_card_edited_after_publishing_fails(run):
    """The platform re-signs a card with a smaller epsilon: hash and statement mismatch."""

    def shrink(card: dict[str, Any]) -> None:
        card["privacy"]["partners"][0]["epsilon"] = 0.1

    resign_card(run, run.card_dir, shrink)
    source = f"models/{run.card_dir.name}/card.json"

    codes = found(audit(run))

    assert ("card-hash-mismatch", source, None) in codes
    assert ("card-epsilon-mismatch", source, None) in codes


def test_swapped_weights_and_unsigned_cards_fail(run):
    """Weights that do not match the card, and a card whose signature does not verify."""
    (run.card_dir / WEIGHTS_FILE).write_bytes(b"swapped")
    source = f"models/{run.card_dir.name}/card.json"
    assert ("card-hash-mismatch", source, None) in found(audit(run))

    card = json.loads((run.card_dir / CARD_FILE).read_text())
    card["rounds"] = 99
    (run.card_dir / CARD_FILE).write_text(json.dumps(card))
    assert ("card-unreadable", source, None) in found(audit(run))


# ---- privacy ------------------------------------------------------------------------------------
def test_a_partner_overspending_its_budget_fails(tmp_path):
    """acme's spend passes its budget in round 3: that entry is named, earlier ones are not."""
    tight = PrivacyBudget(epsilon=0.45, delta=1e-5)
    run = write_synthetic_run(
        tmp_path, partners=[SyntheticPartner(**{**ACME.__dict__, "budget": tight})], rounds=3
    )
    claims = [json.loads(line)["body"]["epsilon_after"] for line in lines(run.ledger("acme"))]
    first_over = next(i for i, eps in enumerate(claims) if eps > tight.epsilon)

    result = audit(run)

    overruns = {(s, seq) for c, s, seq in found(result) if c == "budget-overrun"}
    assert overruns == {("acme.jsonl", seq) for seq in range(first_over, 3)}
    assert first_over > 0


def test_a_claimed_epsilon_below_the_independent_one_fails(tmp_path):
    """A partner whose accountant under-reports by 20% is flagged on every release."""
    run = write_synthetic_run(
        tmp_path, partners=[SyntheticPartner(**{**ACME.__dict__, "epsilon_scale": 0.8})], rounds=2
    )

    result = audit(run)

    assert found(result) == {("epsilon-understated", "acme.jsonl", seq) for seq in (0, 1)}
    assert "below the independent dp_accounting RDP" in result.findings[0].message


def test_an_under_report_within_tolerance_passes(tmp_path):
    """0.5% under the independent figure is within the stated 1% tolerance, not at 0.1%."""
    run = write_synthetic_run(
        tmp_path, partners=[SyntheticPartner(**{**ACME.__dict__, "epsilon_scale": 0.995})], rounds=1
    )

    assert audit(run, tolerance=0.01).passed
    assert not audit(run, tolerance=0.001).passed


def _platform_seq(run: SyntheticRun, kind: str, **match: Any) -> int:
    for entry in read_ledger(run.ledger("platform")).entries:
        if entry.kind == kind and all(entry.body.get(k) == v for k, v in match.items()):
            return entry.seq
    raise AssertionError(f"no {kind} entry matching {match}")


def test_every_finding_carries_the_offending_entry(run):
    """Findings about ledger entries embed the entry, so the report can show it."""
    rewrite(run.ledger("acme"), generate_signing_key(), "acme", lambda body: None)

    for finding in audit(run).findings:
        if finding.seq is not None:
            assert Entry.from_dict(finding.entry).seq == finding.seq
