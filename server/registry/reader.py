"""Load a published model only after it verified: signature, weights hash, spec hash.

Order matters: nothing in ``card.json`` is trusted (not even its format version)
before the signature over it verified, and the weights are hashed from the very
bytes that are then deserialised, so a file swapped in between cannot slip through.
The verified card is parsed by the one card schema (:class:`ModelCard`), which
refuses what it cannot read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load

from fedctr.models.base import CTRModel, build_model
from fedctr.models.config import ModelConfig
from fedctr.models.errors import FeatureSpecError, SpecMismatchError, UnknownModelError
from fedctr.models.spec import FeatureSpec
from fedctr.privacy.card import (
    CARD_FILE,
    SIGNATURE_FILE,
    WEIGHTS_FILE,
    CardFormatError,
    ModelCard,
)
from fedctr.privacy.signing import SignatureInvalid, canonical_json, verify
from fedctr.server.registry.errors import ArtifactNotFound, ArtifactTampered
from fedctr.server.registry.layout import VERSION_RE, resolve_version_dir


@dataclass(frozen=True)
class LoadedModel:
    """A verified model in eval mode, its (verified, typed) card and its feature spec."""

    model: CTRModel
    card: ModelCard
    spec: FeatureSpec
    version: str
    path: Path
    weights_sha256: str
    card_sha256: str


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


def _tampered(path: Path) -> ArtifactTampered:
    return ArtifactTampered(
        f"model artifact {path} does not verify against the public key: it was modified, "
        "is unsigned or incomplete, or was signed by another key"
    )


def _authentic_card(version_dir: Path, public_key: Ed25519PublicKey) -> Any:
    """The card JSON of ``version_dir`` once its signature verified (not yet parsed)."""
    card_path = version_dir / CARD_FILE
    try:
        card_raw = card_path.read_bytes()
    except FileNotFoundError as exc:
        raise ArtifactNotFound(f"no model card at {card_path}") from exc
    try:
        sig_doc = json.loads((version_dir / SIGNATURE_FILE).read_bytes())
        card = json.loads(card_raw, parse_constant=_reject_constant)
        verify(public_key, sig_doc["signature"], canonical_json(card))
    except (OSError, ValueError, TypeError, KeyError, SignatureInvalid) as exc:
        raise _tampered(version_dir) from exc
    return card


def verify_card(version_dir: Path, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The card JSON of ``version_dir`` once its signature verified and it parses as a
    :class:`ModelCard` (the JSON, for callers that hash it or check its leaves)."""
    card = _authentic_card(version_dir, public_key)
    ModelCard.from_json(card)
    return card


def _spec_from_card(card: ModelCard, expected_spec_hash: str | None) -> FeatureSpec:
    try:
        spec = FeatureSpec.from_dict(card.feature_spec, source="model card")
    except (FeatureSpecError, KeyError, TypeError) as exc:
        raise CardFormatError(f"model card feature spec is unreadable: {exc}") from exc
    if spec.spec_hash != card.spec_hash:
        raise SpecMismatchError(
            f"model card names feature spec hash {card.spec_hash[:12]} but its spec "
            f"hashes to {spec.spec_hash[:12]}; republish the model"
        )
    if expected_spec_hash is not None and spec.spec_hash != expected_spec_hash:
        raise SpecMismatchError(
            f"model {card.model_version} was trained for feature spec "
            f"{spec.spec_hash[:12]} ({spec.name}) but this service hashes requests with "
            f"{expected_spec_hash[:12]}; serve it with the spec it was trained on"
        )
    return spec


def load_verified(
    path: Path, public_key: Ed25519PublicKey, *, expected_spec_hash: str | None
) -> LoadedModel:
    """Verify and load the model at ``path`` (a registry directory or a version directory).

    Raises :class:`ArtifactNotFound`, :class:`ArtifactTampered` (opaque),
    :class:`SpecMismatchError`, or a :class:`~fedctr.privacy.card.ModelCardError`
    (:class:`CardFormatError`, :class:`~fedctr.privacy.card.CardFieldError`).
    """
    if not isinstance(public_key, Ed25519PublicKey):
        raise TypeError("public_key must be an Ed25519PublicKey")
    version_dir = resolve_version_dir(Path(path))
    raw_card = _authentic_card(version_dir, public_key)
    card = ModelCard.from_json(raw_card)
    if VERSION_RE.match(version_dir.name) and card.model_version != version_dir.name:
        # An authentic older card copied under a newer name: a rollback, not a new model.
        raise _tampered(version_dir)
    try:
        weights = (version_dir / WEIGHTS_FILE).read_bytes()
    except OSError as exc:
        raise _tampered(version_dir) from exc
    weights_sha256 = hashlib.sha256(weights).hexdigest()
    if card.weights_sha256 != weights_sha256:
        raise _tampered(version_dir)
    spec = _spec_from_card(card, expected_spec_hash)
    try:
        model = build_model(spec, ModelConfig.from_dict(card.model_config))
        state = safetensors_load(weights)
        model.load_state_dict(state, strict=True)
    except (UnknownModelError, ValueError, TypeError, RuntimeError, SafetensorError) as exc:
        raise CardFormatError(
            f"model {card.model_version} cannot be rebuilt by this fedctr: {exc}"
        ) from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(
        model=model,
        card=card,
        spec=spec,
        version=card.model_version,
        path=version_dir,
        weights_sha256=weights_sha256,
        card_sha256=hashlib.sha256(canonical_json(raw_card)).hexdigest(),
    )


__all__ = ["LoadedModel", "load_verified", "verify_card"]
