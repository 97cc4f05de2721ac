"""The CTR model interface, and registration of models with their config types.

Every model maps ``(x_cat [N,F] long, x_num [N,D] float, x_dense [N,E] float)`` to
click logits ``[N]``. One signature lets the partner trainer, the evaluator, the
DP-SGD implementations and the scoring API treat all models alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar, cast

import torch
from torch import nn

from fedctr.models.config import MODELS, ModelConfig, ModelPlugin
from fedctr.models.errors import ModelConfigError
from fedctr.models.spec import FeatureSpec


class CTRModel(nn.Module, ABC):
    """A click/conversion model built from a feature spec and a model config."""

    def __init__(self, spec: FeatureSpec, config: ModelConfig) -> None:
        super().__init__()
        self.spec_hash = spec.spec_hash
        self.config = config

    @abstractmethod
    def forward(
        self, x_cat: torch.Tensor, x_num: torch.Tensor, x_dense: torch.Tensor
    ) -> torch.Tensor:
        """Return logits of shape ``[N]``."""


M = TypeVar("M", bound=CTRModel)


def register_model(config_type: type[ModelConfig]) -> Callable[[type[M]], type[M]]:
    """Class decorator: the model named ``config_type.name``, built from that config
    type; a name is registered once."""

    def wrap(cls: type[M]) -> type[M]:
        MODELS.add(config_type.name, ModelPlugin(config_type, cls))
        return cls

    return wrap


def registered_models() -> tuple[str, ...]:
    """Names of every model that can be built."""
    return MODELS.names()


def build_model(spec: FeatureSpec, config: ModelConfig) -> CTRModel:
    """Instantiate the registered model ``config.name`` for ``spec``."""
    plugin = MODELS.get(config.name)
    if not isinstance(config, plugin.config_type):
        raise ModelConfigError(
            f"model '{config.name}' is built from a {plugin.config_type.__name__}, "
            f"not a {type(config).__name__}"
        )
    return cast(CTRModel, plugin.model_type(spec, config))  # register_model admits CTRModels


__all__ = ["CTRModel", "build_model", "register_model", "registered_models"]
