"""The signed model registry: publish, verify and load global models.

A published model is ``models/<version>/{model.safetensors, card.json, card.sig}``
plus an atomically replaced ``LATEST`` pointer. Nothing is unpickled, and nothing
is trusted before the Ed25519 signature over the card and the weights hash verify.
The card's schema is :mod:`fedctr.privacy.card`, shared with the scoring service and
the audit; its types are re-exported here for publishers.
"""

from fedctr.privacy.card import (
    CARD_FORMAT_VERSION,
    ContextFallback,
    ModelCard,
    ModelCardFields,
    PartnerProvenance,
    ServingGuard,
)
from fedctr.server.registry.cli import build_verify_parser, verify_model, verify_model_main
from fedctr.server.registry.errors import (
    ArtifactNotFound,
    ArtifactTampered,
    CardFieldError,
    CardFormatError,
    RegistryError,
    SpecMismatchError,
)
from fedctr.server.registry.layout import (
    LATEST_FILE,
    list_versions,
    read_latest,
    resolve_version_dir,
)
from fedctr.server.registry.reader import LoadedModel, load_verified, verify_card
from fedctr.server.registry.writer import PublishedModel, publish_model, weights_file

__all__ = [
    "CARD_FORMAT_VERSION",
    "LATEST_FILE",
    "ArtifactNotFound",
    "ArtifactTampered",
    "CardFieldError",
    "CardFormatError",
    "ContextFallback",
    "LoadedModel",
    "ModelCard",
    "ModelCardFields",
    "PartnerProvenance",
    "PublishedModel",
    "RegistryError",
    "ServingGuard",
    "SpecMismatchError",
    "build_verify_parser",
    "list_versions",
    "load_verified",
    "publish_model",
    "read_latest",
    "resolve_version_dir",
    "verify_card",
    "verify_model",
    "verify_model_main",
    "weights_file",
]
