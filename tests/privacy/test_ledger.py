"""Spec of the privacy ledger: signed, chained, durable, and honest about damage."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from fedctr.privacy.budget import DPSGDRound, PrivacyBudget
from fedctr.privacy.ledger import (
    GENESIS_HASH,
    SCHEMA_VERSION,
    TORN_SUFFIX,
    Entry,
    FindingCode,
    Ledger,
    LedgerCorrupt,
    LedgerEntryInvalid,
    LedgerError,
    LedgerLocked,
    LedgerTornTail,
    LedgerWriteRefused,
    PartnerRelease,
    PlatformPublish,
    PlatformReport,
    make_entry,
    read_ledger,
    repair_torn_tail,
    verify_entry,
    verify_ledger,
)
from fedctr.privacy.signing import (
    SignatureInvalid,
    canonical_json,
    generate_signing_key,
    key_id,
    sign,
)


def release(round_: int, epsilon: float = 0.5, partner: str = "acme") -> PartnerRelease:
    return PartnerRelease(
        run_id="run-1",
        round=round_,
        partner_id=partner,
        base_model_hash=f"{round_:064x}",
        update_hash=f"{round_ + 100:064x}",
        mechanism=DPSGDRound(noise_multiplier=1.1, sample_rate=0.01, steps=100, max_grad_norm=1.0),
        accountant="rdp",
        dp_implementation="opacus-ghost",
        unit_of_privacy="example",
        epsilon_after=epsilon,
        delta=1e-5,
        budget=PrivacyBudget(epsilon=8.0, delta=1e-5),
    )


@pytest.fixture
def key():
    return generate_signing_key()


def write(path: Path, key, rounds: int = 3) -> list[Entry]:
    with Ledger.open(path, signing_key=key, owner="acme") as ledger:
        return [ledger.append(release(r, 0.5 * r)) for r in range(1, rounds + 1)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# ---- writing and reading -------------------------------------------------------------
def test_appended_entries_read_back_signed_and_chained(tmp_path, key):
    """Entries come back in order, seq 0.., each chained to the previous, all verifying."""
    written = write(tmp_path / "acme.jsonl", key)

    read = read_ledger(tmp_path / "acme.jsonl")

    assert read.entries == tuple(written)
    assert [e.seq for e in read.entries] == [0, 1, 2]
    assert read.entries[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in read.entries[1:]] == [e.hash for e in read.entries[:-1]]
    assert read.intact
    assert verify_ledger(read, key.public_key(), owner="acme") == []
    assert read.entries[2].parsed_body() == release(3, 1.5)


def test_each_line_is_the_canonical_json_of_its_entry(tmp_path, key):
    """On disk, one line per entry, exactly the bytes that were hashed."""
    written = write(tmp_path / "acme.jsonl", key)

    assert lines(tmp_path / "acme.jsonl") == [e.canonical_bytes() + b"\n" for e in written]


def test_reopening_continues_the_chain(tmp_path, key):
    """A restarted node appends after what is on disk, with the right seq and prev_hash."""
    first = write(tmp_path / "acme.jsonl", key, rounds=2)

    with Ledger.open(tmp_path / "acme.jsonl", signing_key=key, owner="acme") as ledger:
        assert ledger.entries == tuple(first)
        third = ledger.append(release(3, 1.5))

    assert third.seq == 2
    assert third.prev_hash == first[-1].hash
    assert verify_ledger(read_ledger(tmp_path / "acme.jsonl"), key.public_key(), owner="acme") == []


def test_every_append_is_fsynced_and_creation_fsyncs_the_directory(tmp_path, key, fsync_log):
    """Durability: the file after each entry, the directory once when the file is created."""
    write(tmp_path / "acme.jsonl", key, rounds=2)

    assert fsync_log == ["dir", "file", "file"]


def test_a_second_writer_is_refused(tmp_path, key):
    """One writer at a time: the open ledger is locked."""
    with (
        Ledger.open(tmp_path / "acme.jsonl", signing_key=key, owner="acme"),
        pytest.raises(LedgerLocked),
    ):
        Ledger.open(tmp_path / "acme.jsonl", signing_key=key, owner="acme")


def test_a_kind_and_a_plain_mapping_are_parsed_like_untrusted_input(tmp_path, key):
    """``append(kind, dict)`` records the same entry as the typed body, or refuses bad data."""
    with Ledger.open(tmp_path / "acme.jsonl", signing_key=key, owner="acme") as ledger:
        entry = ledger.append("partner-release", release(1).to_dict())
        with pytest.raises(LedgerEntryInvalid):
            ledger.append("partner-release", {**release(2).to_dict(), "epsilon_after": None})

    assert entry.parsed_body() == release(1)
    assert [e.seq for e in read_ledger(tmp_path / "acme.jsonl").entries] == [0]


# ---- what a ledger refuses ----------------------------------------------------------------
def test_writer_refuses_entries_that_do_not_belong(tmp_path, key):
    """Wrong kind for the owner, another partner's release, a second entry for a round."""
    publish = PlatformPublish(
        run_id="run-1",
        model_version="v1",
        weights_sha256="a" * 64,
        card_sha256="b" * 64,
        rounds=3,
        partners=("acme",),
    )
    with Ledger.open(tmp_path / "acme.jsonl", signing_key=key, owner="acme") as ledger:
        ledger.append(release(1))
        with pytest.raises(LedgerWriteRefused, match="platform-publish"):
            ledger.append(publish)
        with pytest.raises(LedgerWriteRefused, match="globex"):
            ledger.append(release(2, partner="globex"))
        with pytest.raises(LedgerWriteRefused, match="already has"):
            ledger.append(release(1))
    with Ledger.open(tmp_path / "platform.jsonl", signing_key=key, owner="platform") as ledger:
        with pytest.raises(LedgerWriteRefused):
            ledger.append(release(1))
        assert ledger.append(publish).kind == "platform-publish"


def test_writer_refuses_to_extend_a_ledger_it_cannot_verify(tmp_path, key):
    """Another key's ledger, or one with a damaged line in the middle, is never extended."""
    path = tmp_path / "acme.jsonl"
    write(path, key)

    with pytest.raises(LedgerCorrupt, match="signature"):
        Ledger.open(path, signing_key=generate_signing_key(), owner="acme")

    content = lines(path)
    path.write_bytes(content[0] + b"{not json\n" + b"".join(content[1:]))
    with pytest.raises(LedgerCorrupt, match="line 2"):
        Ledger.open(path, signing_key=key, owner="acme")


# ---- crashes ---------------------------------------------------------------------------
def test_crash_mid_write_leaves_a_torn_tail_that_never_hides_earlier_entries(
    tmp_path, key, monkeypatch
):
    """A write cut short: readers keep every earlier entry and report the torn last line."""
    path = tmp_path / "acme.jsonl"
    write(path, key, rounds=2)
    real_write = os.write

    def crash_half_way(fd: int, data) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(5, "Input/output error")

    with Ledger.open(path, signing_key=key, owner="acme") as ledger:
        monkeypatch.setattr(os, "write", crash_half_way)
        with pytest.raises(LedgerError, match="failed"):
            ledger.append(release(3))
        monkeypatch.setattr(os, "write", real_write)
        with pytest.raises(LedgerError, match="failed earlier"):
            ledger.append(release(3))

    read = read_ledger(path)
    assert [e.seq for e in read.entries] == [0, 1]
    assert read.torn_tail is not None and read.torn_tail.line == 3
    findings = verify_ledger(read, key.public_key(), owner="acme")
    assert [(f.code, f.line) for f in findings] == [(FindingCode.TORN_TAIL, 3)]


def test_writer_refuses_a_torn_tail_until_repaired_and_keeps_the_torn_bytes(tmp_path, key):
    """Opening refuses; repair moves the torn bytes to <ledger>.torn; the chain then goes on."""
    path = tmp_path / "acme.jsonl"
    write(path, key, rounds=2)
    torn = b'{"body":{"round":3'
    with path.open("ab") as fh:
        fh.write(torn)

    with pytest.raises(LedgerTornTail, match="line 3"):
        Ledger.open(path, signing_key=key, owner="acme")
    with Ledger.open(path, signing_key=key, owner="acme", repair_torn_tail=True) as ledger:
        assert ledger.append(release(3)).seq == 2

    assert (tmp_path / f"acme.jsonl{TORN_SUFFIX}").read_bytes() == torn + b"\n"
    assert verify_ledger(read_ledger(path), key.public_key(), owner="acme") == []
    assert repair_torn_tail(path) is None


# ---- tampering, seen by the chain -----------------------------------------------------------
def codes_at(path: Path, public_key) -> list[tuple[str, int | None]]:
    read = read_ledger(path)
    return [(str(f.code), f.seq) for f in verify_ledger(read, public_key, owner="acme")]


def test_an_edited_epsilon_breaks_its_signature_and_the_next_link(tmp_path, key):
    """Edit entry 1's epsilon in place: bad signature at seq 1, chain break at seq 2."""
    path = tmp_path / "acme.jsonl"
    write(path, key)
    content = lines(path)
    entry = json.loads(content[1])
    entry["body"]["epsilon_after"] = 0.1
    content[1] = canonical_json(entry) + b"\n"
    path.write_bytes(b"".join(content))

    assert codes_at(path, key.public_key()) == [("bad-signature", 1), ("chain-break", 2)]


def test_dropped_and_reordered_entries_break_seq_and_chain(tmp_path, key):
    """Drop the middle entry, or swap two: seq and prev_hash name where."""
    path = tmp_path / "acme.jsonl"
    write(path, key, rounds=4)
    content = lines(path)

    path.write_bytes(b"".join([content[0], content[2], content[3]]))
    assert codes_at(path, key.public_key()) == [("seq-mismatch", 2), ("chain-break", 2)]

    path.write_bytes(b"".join([content[0], content[2], content[1], content[3]]))
    assert codes_at(path, key.public_key()) == [
        ("seq-mismatch", 2),
        ("chain-break", 2),
        ("seq-mismatch", 1),
        ("chain-break", 1),
        ("seq-mismatch", 3),
        ("chain-break", 3),
    ]


def test_a_ledger_rewritten_with_another_key_fails_every_signature(tmp_path, key):
    """A forger re-signs a consistent chain with its own key: every entry is flagged."""
    path = tmp_path / "acme.jsonl"
    write(path, generate_signing_key())

    assert codes_at(path, key.public_key()) == [("bad-signature", s) for s in (0, 1, 2)]


# ---- untrusted input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("round", True),
        ("round", 0),
        ("epsilon_after", -1.0),
        ("epsilon_after", "0.5"),
        ("delta", 1.0),
        ("update_hash", "ABC"),
        ("unit_of_privacy", "person"),
        ("max_rows_per_unit", 0),
        ("accountant", "gdp"),
        ("partner_id", "../etc"),
        ("mechanism", {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "sample_rate": 0.01}),
        ("budget", {"epsilon": 8.0, "delta": 1e-5, "extra": 1}),
        ("surprise", 1),
        ("num_examples", 1000),
    ],
)
def test_release_bodies_are_parsed_field_by_field(field, value):
    """Wrong types, ranges, missing and unknown fields are rejected with the field's name."""
    data = release(1).to_dict()
    data[field] = value

    with pytest.raises(LedgerEntryInvalid):
        PartnerRelease.from_dict(data)


def report(round_: int = 1) -> PlatformReport:
    return PlatformReport.from_release(release(round_), partner_entry_hash="c" * 64, accepted=True)


@pytest.mark.parametrize("body", [release, report], ids=["partner-release", "platform-report"])
def test_bodies_carry_no_row_counts(body):
    """Schema 2: no row count in what a partner sends or the platform records; one is refused
    by name, like any field the schema does not declare."""
    data = body(1).to_dict()
    declared_bound = {"max_rows_per_unit"}  # the declared per-step bound, never a count
    assert not {k for k in data if "example" in k or "rows" in k} - declared_bound

    with pytest.raises(LedgerEntryInvalid, match="unknown fields \\['num_examples'\\]"):
        type(body(1)).from_dict({**data, "num_examples": 1000})


def test_entries_of_another_schema_version_are_refused(key):
    """Schema 1 (bodies with row counts) and 2 (no unit of privacy, no bucket selection)
    entries are refused by their version, not read as schema 3."""
    entry = make_entry(
        seq=0, owner="acme", body=release(1), prev_hash=GENESIS_HASH, signing_key=key
    )
    assert entry.schema_version == SCHEMA_VERSION == 3
    for version in (1, 2):
        old = {**entry.to_dict(), "schema_version": version}
        with pytest.raises(LedgerEntryInvalid, match=f"schema_version {version}"):
            Entry.from_dict(old)


def test_a_signed_entry_with_an_undeclared_body_field_is_a_schema_finding(tmp_path, key):
    """Validly signed and chained, but the body carries a row count: the integrity check
    reports it (schema-invalid), naming the field and not its value."""
    path = tmp_path / "acme.jsonl"
    unsigned = Entry(
        schema_version=SCHEMA_VERSION,
        seq=0,
        kind="partner-release",
        owner="acme",
        body={**release(1).to_dict(), "num_examples": 987654},
        prev_hash=GENESIS_HASH,
        signer=key_id(key),
        signature="",
    )
    signed = replace(unsigned, signature=sign(key, canonical_json(unsigned.unsigned_dict())))
    path.write_bytes(signed.canonical_bytes() + b"\n")

    findings = verify_ledger(read_ledger(path), key.public_key(), owner="acme")

    assert [(f.code, f.seq) for f in findings] == [(FindingCode.SCHEMA, 0)]
    assert "num_examples" in findings[0].message and "987654" not in findings[0].message


@pytest.mark.parametrize(
    "line",
    [
        b'{"seq": NaN}',
        b'{"seq": 1, "seq": 2}',
        b"[]",
        b"",
    ],
)
def test_entry_json_rejects_nan_duplicate_keys_and_non_objects(line):
    """The envelope parser accepts only a well-formed JSON object."""
    with pytest.raises(LedgerEntryInvalid):
        Entry.from_json(line)


def test_platform_verifies_a_partner_entry_received_with_an_update(key):
    """The entry travels as canonical JSON; any change fails verification, opaquely."""
    entry = make_entry(
        seq=0, owner="acme", body=release(1), prev_hash=GENESIS_HASH, signing_key=key
    )
    received = Entry.from_json(entry.to_json())
    verify_entry(received, key.public_key())
    report = PlatformReport.from_release(
        received.parsed_body(), partner_entry_hash=received.hash, accepted=True
    )
    assert report.partner_entry_hash == entry.hash

    forged = json.loads(entry.to_json())
    forged["body"]["epsilon_after"] = 0.01
    with pytest.raises(SignatureInvalid):
        verify_entry(Entry.from_dict(forged), key.public_key())
    with pytest.raises(SignatureInvalid):
        verify_entry(received, generate_signing_key().public_key())
