"""Feature spec and CTR models: pure torch, no Flower, no Opacus."""

from fedctr.models.base import CTRModel, build_model, register_model, registered_models
from fedctr.models.config import DEFAULT_MODEL, ModelConfig, model_config
from fedctr.models.dcnv2 import DCNv2Config
from fedctr.models.deepfm import DeepFMConfig
from fedctr.models.encoding import canonical_scalar, hash_column, hash_value, transform_numeric
from fedctr.models.errors import (
    FeatureSpecError,
    ModelConfigError,
    SpecMismatchError,
    UnknownModelError,
)
from fedctr.models.fm import FMConfig
from fedctr.models.fusion import FusionConfig
from fedctr.models.lr import LRConfig
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
    "DEFAULT_MODEL",
    "CTRModel",
    "CategoricalFeature",
    "DCNv2Config",
    "DeepFMConfig",
    "EmbeddingFeature",
    "FMConfig",
    "FeatureSpec",
    "FeatureSpecError",
    "FusionConfig",
    "LRConfig",
    "ModelConfig",
    "ModelConfigError",
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
    "model_config",
    "predict_proba",
    "register_model",
    "registered_models",
    "roc_auc",
    "state_dict_sha256",
    "transform_numeric",
]
