"""What a published model card claims, as far as the audit is concerned.

The card's format and signature belong to the registry (``fedctr.server.registry``): a
version directory holds ``card.json``, ``card.sig`` (``{"signature": base64 Ed25519
over canonical_json(card)}``) and ``model.safetensors``. The audit takes a
*verifier* callable that returns the card once authentic, so the CLI can pass the
registry's own ``verify_card``; :func:`verify_signed_card` is a stand-alone one for
the same format. The card hash is ``sha256(canonical_json(card))``, as the registry
reports it in ``PublishedModel.card_sha256``. Which card fields may exist at all is
the wire contract's (:data:`fedctr.privacy.wire.CARD_FIELDS`), checked in
:mod:`fedctr.privacy.audit.contract`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fedctr.privacy.errors import PrivacyError
from fedctr.privacy.signing import SignatureInvalid, canonical_json, sha256_file, verify

CARD_FILE = "card.json"
CARD_SIGNATURE_FILE = "card.sig"
WEIGHTS_FILE = "model.safetensors"

CardVerifier = Callable[[Path], Mapping[str, Any]]
"""Version directory -> authentic card dict; raises on anything else."""


class CardInvalid(PrivacyError, ValueError):
    """A model card is unsigned, tampered with, or lacks what the audit needs."""


@dataclass(frozen=True, kw_only=True)
class CardPartner:
    """One partner's privacy statement on a card."""

    partner_id: str
    epsilon: float
    delta: float
    accountant: str
    unit_of_privacy: str
    dp_implementation: str
    rounds_contributed: int


@dataclass(frozen=True, kw_only=True)
class CardClaims:
    """The card facts the audit ties to ledger entries."""

    source: str
    model_version: str
    run_id: str
    rounds: int
    weights_sha256: str
    card_sha256: str
    neighbour_relation: str
    partners: tuple[CardPartner, ...]
    weights_file_sha256: str | None  # of model.safetensors beside the card, if present


def _get(data: Any, *path: str) -> Any:
    value = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise CardInvalid(f"model card lacks {'.'.join(path)}")
        value = value[key]
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CardInvalid(f"model card {name} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CardInvalid(f"model card {name} must be a non-negative integer, got {value!r}")
    return value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise CardInvalid(f"model card {name} must be a non-empty string, got {value!r}")
    return value


def card_claims(card: Mapping[str, Any], *, source: str, version_dir: Path | None) -> CardClaims:
    """Parse the audited fields of an authentic ``card`` field by field."""
    partners_raw = _get(card, "privacy", "partners")
    if not isinstance(partners_raw, list):
        raise CardInvalid("model card privacy.partners must be a list")
    partners = []
    for i, p in enumerate(partners_raw):
        name = f"privacy.partners[{i}]"
        partners.append(
            CardPartner(
                partner_id=_string(_get(p, "partner_id"), f"{name}.partner_id"),
                epsilon=_number(_get(p, "epsilon"), f"{name}.epsilon"),
                delta=_number(_get(p, "delta"), f"{name}.delta"),
                accountant=_string(_get(p, "accountant"), f"{name}.accountant"),
                unit_of_privacy=_string(_get(p, "unit_of_privacy"), f"{name}.unit_of_privacy"),
                dp_implementation=_string(
                    _get(p, "dp_implementation"), f"{name}.dp_implementation"
                ),
                rounds_contributed=_integer(
                    _get(p, "rounds_contributed"), f"{name}.rounds_contributed"
                ),
            )
        )
    weights_file = None if version_dir is None else version_dir / WEIGHTS_FILE
    weights_sha = sha256_file(weights_file) if weights_file and weights_file.is_file() else None
    try:
        digest = hashlib.sha256(canonical_json(dict(card))).hexdigest()
    except (TypeError, ValueError) as exc:
        raise CardInvalid(f"model card is not plain JSON: {exc}") from exc
    return CardClaims(
        source=source,
        model_version=_string(_get(card, "model_version"), "model_version"),
        run_id=_string(_get(card, "run_id"), "run_id"),
        rounds=_integer(_get(card, "rounds"), "rounds"),
        weights_sha256=_string(_get(card, "weights", "sha256"), "weights.sha256"),
        card_sha256=digest,
        neighbour_relation=_string(
            _get(card, "privacy", "neighbour_relation"), "privacy.neighbour_relation"
        ),
        partners=tuple(partners),
        weights_file_sha256=weights_sha,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


def verify_signed_card(version_dir: Path, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The card of ``version_dir`` once ``card.sig`` verifies against ``public_key``."""
    try:
        card = json.loads((version_dir / CARD_FILE).read_bytes(), parse_constant=_reject_constant)
        signature = json.loads((version_dir / CARD_SIGNATURE_FILE).read_bytes())["signature"]
        verify(public_key, signature, canonical_json(card))
    except (OSError, ValueError, TypeError, KeyError, SignatureInvalid) as exc:
        raise CardInvalid(
            f"model card in {version_dir} does not verify against the platform key: "
            "modified, unsigned, or signed by another key"
        ) from exc
    if not isinstance(card, dict):
        raise CardInvalid(f"model card in {version_dir} is not a JSON object")
    return card


def find_card_dirs(registry_dir: Path) -> list[Path]:
    """Every directory under ``registry_dir`` holding a ``card.json`` (symlinks resolved)."""
    found = {p.parent.resolve() for p in Path(registry_dir).rglob(CARD_FILE) if p.is_file()}
    return sorted(found)


__all__ = [
    "CARD_FILE",
    "CARD_SIGNATURE_FILE",
    "WEIGHTS_FILE",
    "CardClaims",
    "CardInvalid",
    "CardPartner",
    "CardVerifier",
    "card_claims",
    "find_card_dirs",
    "verify_signed_card",
]
