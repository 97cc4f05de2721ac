"""One signed, chained ledger entry and the bytes that are hashed and signed.

An entry is ``{schema_version, seq, kind, owner, body, prev_hash, signer, signature}``.
``signature`` is Ed25519 over :func:`fedctr.privacy.signing.canonical_json` of every other
field; ``prev_hash`` is the SHA-256 of the previous entry's canonical JSON
(signature included), ``"0" * 64`` for the first. On disk a line is exactly the
entry's canonical JSON plus ``\\n``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedctr.privacy.ledger.bodies import ENTRY_KINDS, EntryKind, LedgerBody, ident, parse_body
from fedctr.privacy.ledger.errors import LedgerEntryInvalid
from fedctr.privacy.signing import SignatureInvalid, canonical_json, key_id, sign, verify
from fedctr.validate import Checker

_CHECK = Checker(LedgerEntryInvalid)

SCHEMA_VERSION = 3  # 2: no row counts in release bodies; 3: unit of privacy, bucket selection
GENESIS_HASH = "0" * 64
MAX_LINE_BYTES = 1 << 20

_ENTRY_KEYS = frozenset(
    {"schema_version", "seq", "kind", "owner", "body", "prev_hash", "signer", "signature"}
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_B64 = re.compile(r"[A-Za-z0-9+/]{86}==")


@dataclass(frozen=True, kw_only=True)
class Entry:
    """A ledger entry exactly as recorded; ``body`` is the raw mapping that was signed."""

    schema_version: int
    seq: int
    kind: EntryKind
    owner: str
    body: Mapping[str, Any]
    prev_hash: str
    signer: str
    signature: str

    def unsigned_dict(self) -> dict[str, Any]:
        """Every field but the signature: what the signature covers."""
        return {
            "schema_version": self.schema_version,
            "seq": self.seq,
            "kind": self.kind,
            "owner": self.owner,
            "body": copy.deepcopy(dict(self.body)),
            "prev_hash": self.prev_hash,
            "signer": self.signer,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.unsigned_dict(), "signature": self.signature}

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def hash(self) -> str:
        """SHA-256 hex of the canonical entry: the next entry's ``prev_hash``."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def parsed_body(self) -> LedgerBody:
        """The typed body; raises :class:`LedgerEntryInvalid` if it is malformed."""
        return parse_body(self.kind, self.body)

    def to_json(self) -> str:
        """Canonical JSON text, e.g. to send the entry along with an update."""
        return self.canonical_bytes().decode()

    @classmethod
    def from_dict(cls, data: Any) -> Entry:
        """Parse an untrusted entry's envelope field by field (the body stays raw)."""
        if not isinstance(data, Mapping):
            raise LedgerEntryInvalid("a ledger entry must be a JSON object")
        if data.keys() != _ENTRY_KEYS:
            raise LedgerEntryInvalid(
                f"entry fields must be {sorted(_ENTRY_KEYS)}, got {sorted(map(str, data))}"
            )
        if data["schema_version"] != SCHEMA_VERSION or isinstance(data["schema_version"], bool):
            raise LedgerEntryInvalid(
                f"schema_version {data['schema_version']!r} is not {SCHEMA_VERSION}"
            )
        seq = _CHECK.integer(data["seq"], "seq")
        if data["kind"] not in ENTRY_KINDS:
            raise LedgerEntryInvalid(f"kind must be one of {ENTRY_KINDS}, got {data['kind']!r}")
        if not isinstance(data["body"], Mapping):
            raise LedgerEntryInvalid("body must be a JSON object")
        for name, pattern in (
            ("prev_hash", _HEX64),
            ("signer", _KEY_ID),
            ("signature", _B64),
        ):
            if not isinstance(data[name], str) or not pattern.fullmatch(data[name]):
                raise LedgerEntryInvalid(f"{name} is malformed")
        return cls(
            schema_version=SCHEMA_VERSION,
            seq=seq,
            kind=data["kind"],
            owner=ident(data["owner"], "owner"),
            body=copy.deepcopy(dict(data["body"])),
            prev_hash=data["prev_hash"],
            signer=data["signer"],
            signature=data["signature"],
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        """Parse one untrusted JSON entry (a ledger line or a message field)."""
        return cls.from_dict(loads_strict(text))


def _reject_constant(name: str) -> Any:
    raise LedgerEntryInvalid(f"{name} is not allowed in a ledger")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise LedgerEntryInvalid(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that rejects NaN/Infinity, duplicate keys and oversize input."""
    if len(text) > MAX_LINE_BYTES:
        raise LedgerEntryInvalid(f"entry is larger than {MAX_LINE_BYTES} bytes")
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, LedgerEntryInvalid):
            raise
        raise LedgerEntryInvalid(f"not valid JSON: {exc}") from exc


def make_entry(
    *,
    seq: int,
    owner: str,
    body: LedgerBody,
    prev_hash: str,
    signing_key: Ed25519PrivateKey,
) -> Entry:
    """Build and sign the entry that records ``body`` at position ``seq``."""
    unsigned = Entry(
        schema_version=SCHEMA_VERSION,
        seq=seq,
        kind=body.KIND,
        owner=ident(owner, "owner"),
        body=body.to_dict(),
        prev_hash=prev_hash,
        signer=key_id(signing_key),
        signature="",
    )
    signature = sign(signing_key, canonical_json(unsigned.unsigned_dict()))
    return replace(unsigned, signature=signature)


def verify_entry(entry: Entry, public_key: Ed25519PublicKey) -> None:
    """Raise :class:`SignatureInvalid` unless ``entry`` is signed by ``public_key``.

    The platform calls this on the entry a partner sends with its update, before it
    records a report of it.
    """
    if entry.signer != key_id(public_key):
        raise SignatureInvalid("signature verification failed")
    verify(public_key, entry.signature, canonical_json(entry.unsigned_dict()))


__all__ = [
    "GENESIS_HASH",
    "MAX_LINE_BYTES",
    "SCHEMA_VERSION",
    "Entry",
    "loads_strict",
    "make_entry",
    "verify_entry",
]
