"""Feature spec and CTR models: pure torch, no Flower, no Opacus."""

from fedctr.models import dcnv2, deepfm, fm, fusion, lr  # noqa: F401  (register the models)
from fedctr.models.base import CTRModel, build_model, register_model, registered_models
from fedctr.models.config import ModelConfig
from fedctr.models.encoding import canonical_scalar, hash_column, hash_value, transform_numeric
from fedctr.models.errors import FeatureSpecError, SpecMismatchError, UnknownModelError
from fedctr.models.metrics import log_loss, predict_proba, roc_auc
from fedctr.models.source_layout import SourceLayout
from fedctr.models.spec import (
    CategoricalFeature,
    EmbeddingFeature,
    FeatureSpec,
    NumericFeature,
    builtin_spec_path,
    load_spec,
)
from fedctr.models.weights import state_dict_sha256

__all__ = [
    "CTRModel",
    "CategoricalFeature",
    "EmbeddingFeature",
    "FeatureSpec",
    "FeatureSpecError",
    "ModelConfig",
    "NumericFeature",
    "SourceLayout",
    "SpecMismatchError",
    "UnknownModelError",
    "build_model",
    "builtin_spec_path",
    "canonical_scalar",
    "hash_column",
    "hash_value",
    "load_spec",
    "log_loss",
    "predict_proba",
    "register_model",
    "registered_models",
    "roc_auc",
    "state_dict_sha256",
    "transform_numeric",
]
