"""The CTR model interface and its registry.

Every model maps ``(x_cat [N,F] long, x_num [N,D] float, x_dense [N,E] float)`` to
click logits ``[N]``. One signature lets the partner trainer, the evaluator, the
DP-SGD implementations and the scoring API treat all models alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from fedctr.models.config import ModelConfig
from fedctr.models.errors import UnknownModelError
from fedctr.models.spec import FeatureSpec
from torch import nn


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


ModelFactory = Callable[[FeatureSpec, ModelConfig], CTRModel]
_REGISTRY: dict[str, type[CTRModel]] = {}


def register_model(name: str) -> Callable[[type[CTRModel]], type[CTRModel]]:
    """Class decorator adding a model under ``name``; a second registration is an error."""

    def wrap(cls: type[CTRModel]) -> type[CTRModel]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = cls
        return cls

    return wrap


def registered_models() -> tuple[str, ...]:
    """Names of every model that can be built."""
    return tuple(sorted(_REGISTRY))


def build_model(spec: FeatureSpec, config: ModelConfig) -> CTRModel:
    """Instantiate the registered model ``config.name`` for ``spec``."""
    try:
        cls = _REGISTRY[config.name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model '{config.name}'; choose one of {registered_models()}"
        ) from None
    return cls(spec, config)


__all__ = ["CTRModel", "build_model", "register_model", "registered_models"]
