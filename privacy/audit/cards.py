"""What a published model card claims, as far as the audit is concerned.

The card's schema is :mod:`fedctr.privacy.card`, the one the registry writes and the
scoring service reads; a version directory holds ``card.json``, ``card.sig``
(``{"signature": base64 Ed25519 over canonical_json(card)}``) and
``model.safetensors``. The audit takes a *verifier* callable that returns the card
once authentic, so the CLI can pass the registry's own ``verify_card``;
:func:`verify_signed_card` is a stand-alone one for the same format. The card hash is
``sha256(canonical_json(card))``, as the registry reports it in
``PublishedModel.card_sha256``. Which card fields may exist at all is the wire
contract's (:data:`fedctr.privacy.wire.CARD_FIELDS`), checked in
:mod:`fedctr.privacy.audit.contract`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.privacy.card import CARD_FILE, SIGNATURE_FILE, WEIGHTS_FILE, ModelCard
from fedctr.privacy.errors import PrivacyError
from fedctr.privacy.signing import SignatureInvalid, canonical_json, sha256_file, verify

CardVerifier = Callable[[Path], Mapping[str, Any]]
"""Version directory -> authentic card dict; raises on anything else."""


class CardInvalid(PrivacyError, ValueError):
    """A model card is unsigned, tampered with, or not plain JSON."""


@dataclass(frozen=True, kw_only=True)
class CardClaims:
    """An authentic card as the audit ties it to ledger entries: the typed card, where
    it was found, and the hashes of the signed card and of the weights beside it."""

    source: str
    card: ModelCard
    card_sha256: str
    weights_file_sha256: str | None  # of model.safetensors beside the card, if present
    # The ``passed`` each ``privacy.empirical_audits[]`` item states, as written (None if
    # absent): the typed card recomputes it, so only the raw card shows a card that
    # calls a refuted claim passed.
    empirical_passed: tuple[object, ...] = ()


def card_claims(card: Mapping[str, Any], *, source: str, version_dir: Path | None) -> CardClaims:
    """Parse an authentic ``card`` (:meth:`ModelCard.from_json`, which names any field
    it refuses) and hash it and the weights file beside it."""
    parsed = ModelCard.from_json(card)
    try:
        digest = hashlib.sha256(canonical_json(dict(card))).hexdigest()
    except (TypeError, ValueError) as exc:
        raise CardInvalid(f"model card is not plain JSON: {exc}") from exc
    weights_file = None if version_dir is None else version_dir / WEIGHTS_FILE
    weights_sha = sha256_file(weights_file) if weights_file and weights_file.is_file() else None
    return CardClaims(
        source=source,
        card=parsed,
        card_sha256=digest,
        weights_file_sha256=weights_sha,
        empirical_passed=tuple(
            item.get("passed") for item in card["privacy"].get("empirical_audits", ())
        ),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


def verify_signed_card(version_dir: Path, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The card of ``version_dir`` once ``card.sig`` verifies against ``public_key``."""
    try:
        card = json.loads((version_dir / CARD_FILE).read_bytes(), parse_constant=_reject_constant)
        signature = json.loads((version_dir / SIGNATURE_FILE).read_bytes())["signature"]
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
    "CardClaims",
    "CardInvalid",
    "CardVerifier",
    "card_claims",
    "find_card_dirs",
    "verify_signed_card",
]
