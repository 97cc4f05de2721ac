"""Audit a federation laid out by the directory convention.

::

    <ledgers>/platform.jsonl      <keys>/platform.pub     (also verifies model cards)
    <ledgers>/<partner_id>.jsonl  <keys>/<partner_id>.pub
    <registry>/**/card.json       (+ card.sig, model.safetensors beside each)

A partner is anyone with a ledger or a public key there; a key without a ledger is
a missing ledger, a ledger without a key a missing key: both are findings.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.privacy.audit.audit import run_audit
from fedctr.privacy.audit.cards import CardVerifier, find_card_dirs, verify_signed_card
from fedctr.privacy.audit.result import AuditResult
from fedctr.privacy.errors import PrivacyError
from fedctr.privacy.ledger import PLATFORM_OWNER, ledger_file
from fedctr.privacy.ledger.layout import LEDGER_SUFFIX, PUBLIC_KEY_SUFFIX
from fedctr.privacy.signing import KeyFileError, load_public_key


class AuditInputError(PrivacyError):
    """The audit's input directories or key files are unusable: fix the invocation."""


def _owners(directory: Path, suffix: str) -> set[str]:
    return {p.name[: -len(suffix)] for p in directory.glob(f"*{suffix}") if p.is_file()}


def _key(path: Path) -> Ed25519PublicKey | None:
    if not path.exists():
        return None
    try:
        return load_public_key(path)
    except KeyFileError as exc:
        raise AuditInputError(f"{path} is not an Ed25519 public key (PEM): {exc}") from exc


def audit_directories(
    *,
    ledgers_dir: Path,
    keys_dir: Path,
    registry_dir: Path | None,
    tolerance: float = 0.01,
    card_verifier: CardVerifier | None = None,
) -> AuditResult:
    """Run :func:`run_audit` over the conventional layout.

    ``card_verifier`` defaults to checking ``card.sig`` with ``keys/platform.pub``.
    """
    for name, directory in (("ledgers", ledgers_dir), ("keys", keys_dir)):
        if not Path(directory).is_dir():
            raise AuditInputError(f"{name} directory {directory} does not exist")
    if registry_dir is not None and not Path(registry_dir).is_dir():
        raise AuditInputError(f"registry directory {registry_dir} does not exist")
    ledgers_dir, keys_dir = Path(ledgers_dir), Path(keys_dir)
    partners = (_owners(ledgers_dir, LEDGER_SUFFIX) | _owners(keys_dir, PUBLIC_KEY_SUFFIX)) - {
        PLATFORM_OWNER
    }
    partner_keys = {}
    for pid in partners:
        key = _key(keys_dir / f"{pid}{PUBLIC_KEY_SUFFIX}")
        if key is not None:
            partner_keys[pid] = key
    platform_key = _key(keys_dir / f"{PLATFORM_OWNER}{PUBLIC_KEY_SUFFIX}")
    if card_verifier is None and platform_key is not None:
        card_verifier = partial(verify_signed_card, public_key=platform_key)
    return run_audit(
        partner_ledgers={pid: ledgers_dir / f"{pid}{LEDGER_SUFFIX}" for pid in partners},
        partner_keys=partner_keys,
        platform_ledger=ledger_file(ledgers_dir, PLATFORM_OWNER),
        platform_key=platform_key,
        model_cards=[] if registry_dir is None else find_card_dirs(Path(registry_dir)),
        card_verifier=card_verifier,
        tolerance=tolerance,
    )


__all__ = ["AuditInputError", "audit_directories"]
