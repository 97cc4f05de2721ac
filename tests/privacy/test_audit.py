"""Spec of the compliance audit: an honest run passes; every kind of tampering fails,
naming the file and entry that caused it."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fedctr.privacy.audit import AuditResult, audit_directories, render_html
from fedctr.privacy.audit.contract import WITHHELD
from fedctr.privacy.budget import PrivacyBudget
from fedctr.privacy.card import CARD_FILE, SIGNATURE_FILE, WEIGHTS_FILE
from fedctr.privacy.ledger import GENESIS_HASH, Entry, make_entry, parse_body, read_ledger
from fedctr.privacy.signing import canonical_json, generate_signing_key, sign
from tests.support.audit_run import SyntheticPartner, SyntheticRun, write_synthetic_run

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
    (card_dir / SIGNATURE_FILE).write_text(json.dumps(sig))


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
    from fedctr.server.registry.reader import verify_card

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


# ---- the wire contract -------------------------------------------------------------------------
def _set(card: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b[0].c``-style ``path`` in ``card``, creating mappings on the way."""
    *parents, last = [int(p[:-1]) if p.endswith("]") else p for p in re.split(r"\.|\[", path)]
    node: Any = card
    for key in parents:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[last] = value


@pytest.mark.parametrize(
    ("path", "leaf"),
    [
        ("metrics.federated.auc", "metrics.federated.auc"),
        ("privacy.partners[0].num_examples", "privacy.partners[].num_examples"),
        ("training.seconds", "training.seconds"),
    ],
)
def test_a_card_carrying_an_undeclared_value_fails(tmp_path, path, leaf):
    """The platform signs, publishes and records a card with a value fedctr.privacy.wire does not
    declare: ledgers and card agree, only the contract check catches it. The finding
    names the path, never the value."""
    value = 0.123456789
    run = write_synthetic_run(
        tmp_path, partners=[ACME], rounds=1, edit_card=lambda card: _set(card, path, value)
    )
    source = f"models/{run.card_dir.name}/card.json"

    result = audit(run)

    assert not result.passed and result.verdict == "FAIL"
    assert found(result) == {("undeclared-card-field", source, None)}
    (finding,) = result.findings
    assert leaf in finding.message
    assert str(value) not in json.dumps(result.to_dict())


def test_every_undeclared_card_value_is_a_finding_of_its_own(tmp_path):
    """Two undeclared values, two findings; a malformed card still has them reported."""

    def overshare(card: dict[str, Any]) -> None:
        card["metrics"]["federated"] = {"auc": 0.7}
        card["privacy"]["partners"][0]["num_examples"] = 5000
        del card["privacy"]["neighbour_relation"]

    run = write_synthetic_run(tmp_path, partners=[ACME], rounds=1, edit_card=overshare)

    result = audit(run)

    undeclared = sorted(f.message for f in result.findings if f.code == "undeclared-card-field")
    assert len(undeclared) == 2
    assert "'metrics.federated.auc'" in undeclared[0]
    assert "'privacy.partners[].num_examples'" in undeclared[1]
    assert "card-unreadable" in {str(f.code) for f in result.findings}


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda card: _set(card, "privacy.neighbour_relation", "replace one row"), "neighbour"),
        (
            lambda card: _set(card, "privacy.partners[0].dp_implementation", "opacus-plain"),
            "dp_implementation",
        ),
    ],
    ids=["neighbour-relation", "dp-implementation"],
)
def test_a_card_stating_another_relation_or_implementation_fails(tmp_path, change, what):
    """Declared card values are checked against the ledgers and the contract too."""
    run = write_synthetic_run(tmp_path, partners=[ACME], rounds=1, edit_card=change)

    result = audit(run)

    assert {c for c, _, _ in found(result)} == {"card-mismatch"}
    assert what in result.findings[0].message


@pytest.mark.parametrize(
    "change",
    [
        lambda card: _set(card, "training.failures", []),
        lambda card: card.update(metrics={}),
    ],
    ids=["no-failures", "no-platform-holdout"],
)
def test_an_honest_card_with_empty_declared_sections_passes(tmp_path, change):
    """A run without failures, or without platform holdout data, publishes nothing undeclared."""
    run = write_synthetic_run(tmp_path, partners=[ACME], rounds=1, edit_card=change)

    assert audit(run).passed


def resign_raw(path: Path, key, owner: str, change: Callable[[Entry], dict[str, Any]]) -> None:
    """Re-sign and re-chain a ledger with raw bodies, as an owner could, bypassing the schema."""
    prev, out = GENESIS_HASH, []
    for entry in read_ledger(path).entries:
        unsigned = replace(entry, body=change(entry), prev_hash=prev, signature="")
        new = replace(unsigned, signature=sign(key, canonical_json(unsigned.unsigned_dict())))
        out.append(new.canonical_bytes() + b"\n")
        prev = new.hash
    path.write_bytes(b"".join(out))


COUNT = 98765432101234  # long: a short one turns up by chance inside hex hashes


@pytest.mark.parametrize("owner", ["platform", "acme"])
def test_a_ledger_entry_carrying_an_undeclared_field_fails_without_repeating_it(run, owner):
    """A row count (schema 1) in validly signed, chained reports or releases: schema-invalid
    findings that name the field; the report shows the entries with the value withheld."""
    key = run.platform_key if owner == "platform" else run.partner_keys[owner]
    kind = "platform-report" if owner == "platform" else "partner-release"

    def add_count(entry: Entry) -> dict[str, Any]:
        extra = {"num_examples": COUNT} if entry.kind == kind else {}
        return {**entry.body, **extra}

    resign_raw(run.ledger(owner), key, owner, add_count)
    seqs = {e.seq for e in read_ledger(run.ledger(owner)).entries if e.kind == kind}

    result = audit(run)

    assert not result.passed
    schema = {(s, seq) for c, s, seq in found(result) if c == "schema-invalid"}
    assert schema == {(f"{owner}.jsonl", seq) for seq in seqs}
    assert not any(c in ("bad-signature", "chain-break") for c, _, _ in found(result))
    for finding in result.findings:
        if finding.code == "schema-invalid":
            assert "num_examples" in finding.message
            assert finding.entry["body"]["num_examples"] == WITHHELD
    page = render_html(result, generated_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert str(COUNT) not in page and str(COUNT) not in json.dumps(result.to_dict())


def test_a_schema_1_ledger_is_unparseable(run):
    """Entries written before row counts were dropped are refused, line by line."""
    path = run.ledger("acme")
    old = []
    for line in lines(path):
        entry = json.loads(line)
        entry["schema_version"] = 1
        entry["body"]["num_examples"] = COUNT
        old.append(canonical_json(entry) + b"\n")
    path.write_bytes(b"".join(old))

    result = audit(run)

    unparseable = {(f.source, f.line) for f in result.findings if f.code == "unparseable-entry"}
    assert unparseable == {("acme.jsonl", n) for n in (1, 2, 3)}
    assert str(COUNT) not in json.dumps(result.to_dict())
