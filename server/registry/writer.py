"""Publish a global model: safetensors weights, a signed card, an atomic LATEST."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.torch import save as safetensors_save

from fedctr.durable import fsync_dir, write_file_synced
from fedctr.models.base import CTRModel
from fedctr.models.errors import SpecMismatchError
from fedctr.models.spec import FeatureSpec
from fedctr.privacy.card import (
    CARD_FILE,
    SIGNATURE_FILE,
    SIGNING_ALGORITHM,
    WEIGHTS_FILE,
    ModelCard,
    ModelCardFields,
)
from fedctr.privacy.signing import canonical_json, key_id, sign
from fedctr.server.registry.errors import RegistryError
from fedctr.server.registry.layout import (
    MODELS_DIR,
    next_sequence,
    publish_lock,
    version_id,
    write_latest,
)


@dataclass(frozen=True)
class PublishedModel:
    """Where a published model went and the hashes that identify it."""

    version: str
    path: Path
    weights_sha256: str
    card_sha256: str


def _weights(model: CTRModel) -> dict[str, torch.Tensor]:
    tensors = {
        name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items()
    }
    bad = sorted(n for n, t in tensors.items() if t.is_floating_point() and not t.isfinite().all())
    if bad:
        raise RegistryError(f"refusing to publish non-finite weights in {bad}")
    return tensors


def signature_document(card: dict, signing_key: Ed25519PrivateKey) -> bytes:
    """``card.sig``: the Ed25519 signature over ``canonical_json(card)`` and the key id."""
    doc = {
        "algorithm": SIGNING_ALGORITHM,
        "key_id": key_id(signing_key),
        "signed": "canonical_json(card.json)",
        "signature": sign(signing_key, canonical_json(card)),
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def weights_file(model: CTRModel) -> bytes:
    """The bytes of ``weights.safetensors`` for ``model`` (their sha256 names a version)."""
    return safetensors_save(_weights(model), metadata={"format": "pt"})


def publish_model(
    *,
    registry_dir: Path,
    model: CTRModel,
    spec: FeatureSpec,
    card: ModelCardFields,
    signing_key: Ed25519PrivateKey,
    created_at: datetime | None = None,
) -> PublishedModel:
    """Write ``model`` as the next version of ``registry_dir`` and point LATEST at it.

    The model must be the plain :class:`CTRModel` (unwrap Opacus' ``_module``) built
    for ``spec``. ``created_at`` defaults to now (UTC); pass it for reproducible cards.
    """
    if not isinstance(model, CTRModel):
        raise TypeError(
            f"publish_model needs a models.CTRModel, got {type(model).__name__} "
            "(unwrap an Opacus GradSampleModule with ._module)"
        )
    if not isinstance(spec, FeatureSpec):
        raise TypeError(f"spec must be a FeatureSpec, got {type(spec).__name__}")
    if not isinstance(card, ModelCardFields):
        raise TypeError(f"card must be ModelCardFields, got {type(card).__name__}")
    if not isinstance(signing_key, Ed25519PrivateKey):
        raise TypeError("signing_key must be an Ed25519PrivateKey")
    if model.spec_hash != spec.spec_hash:
        raise SpecMismatchError(
            f"model was built for feature spec {model.spec_hash[:12]} but publishing with "
            f"{spec.spec_hash[:12]} ({spec.name}); publish with the spec it was trained on"
        )
    weights = weights_file(model)
    weights_sha256 = hashlib.sha256(weights).hexdigest()
    created_at = created_at or datetime.now(UTC)

    registry_dir = Path(registry_dir)
    models_dir = registry_dir / MODELS_DIR
    models_dir.mkdir(parents=True, exist_ok=True)
    with publish_lock(registry_dir):
        version = version_id(next_sequence(registry_dir), weights_sha256)
        card_dict = ModelCard.build(
            card,
            model_version=version,
            created_at=created_at,
            weights_sha256=weights_sha256,
            spec=spec,
            model_config=model.config.to_dict(),
            signing_key_id=key_id(signing_key),
        ).to_json()
        tmp = models_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            write_file_synced(tmp / WEIGHTS_FILE, weights)
            card_text = json.dumps(card_dict, indent=2, sort_keys=True, allow_nan=False) + "\n"
            write_file_synced(tmp / CARD_FILE, card_text.encode())
            write_file_synced(tmp / SIGNATURE_FILE, signature_document(card_dict, signing_key))
            fsync_dir(tmp)
            final = models_dir / version
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(models_dir)
        write_latest(registry_dir, version)
    return PublishedModel(
        version=version,
        path=final,
        weights_sha256=weights_sha256,
        card_sha256=hashlib.sha256(canonical_json(card_dict)).hexdigest(),
    )


__all__ = ["PublishedModel", "publish_model", "signature_document", "weights_file"]
