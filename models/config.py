"""Model hyper-parameters: one frozen config dataclass per model, declared beside the
model, and the registry pairing each model name with its config type and class.

Cards, wire messages and the ``[model]`` tables fedctr writes carry a config in its
v1 form (:meth:`ModelConfig.to_dict`): the name, then every key of the flat v1
config. Keeping that form keeps published cards and messages identical, and lets
older cards and config files be read as they were written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar

from torch import nn

from fedctr.models.errors import ModelConfigError, UnknownModelError
from fedctr.plugins import Registry, option_names, typed_config
from fedctr.validate import Checker

DEFAULT_MODEL = "deepfm"

# The flat v1 config without its name: every key a built-in model took, its default.
V1_FORM: Mapping[str, Any] = MappingProxyType(
    {
        "embed_dim": 8,
        "hidden": (64, 32),
        "cross_layers": 2,
        "cross_rank": 16,
        "modality_proj": 128,
        "fused_dim": 64,
    }
)


CHECK = Checker(ModelConfigError, "model config")


def layer_sizes(key: str, value: Any) -> tuple[int, ...]:
    """``value`` (any sequence of widths) as a tuple of positive ints."""
    sizes = tuple(int(h) for h in value)
    if any(h <= 0 for h in sizes):
        CHECK.fail(f"{key} sizes must be positive, got {sizes}")
    return sizes


@dataclass(frozen=True)
class ModelConfig:
    """A model's hyper-parameters. A subclass sets ``name`` (its registry key) and
    declares the fields its model reads, with defaults; build one by name with
    :func:`model_config`."""

    name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The v1 form: ``name``, every v1 key (its v1 default where this model does
        not take it), then options new since v1; tuples as lists."""
        own = {f.name: getattr(self, f.name) for f in fields(self)}
        form = {"name": self.name, **V1_FORM, **own}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in form.items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelConfig:
        """The typed config of a v1 form (a card, a message, a ``[model]`` table).

        A v1 key the named model does not take is checked as v1 checked it, then
        dropped: it never shaped that model. Any other key it does not take is an
        :class:`UnknownModelError` naming the key and the model.
        """
        options = dict(raw)
        name = options.pop("name", DEFAULT_MODEL)
        config_type = MODELS.get(name).config_type
        for key in sorted(set(options) & set(V1_FORM) - option_names(config_type)):
            value = options.pop(key)
            if key == "hidden":
                layer_sizes(key, value)
            else:
                CHECK.integer(value, key, minimum=1)
        return typed_config(config_type, options, owner=f"model '{name}'", error=UnknownModelError)


@dataclass(frozen=True)
class ModelPlugin:
    """A registered model: the config it is built from and its network class (a
    ``CTRModel``, which :mod:`fedctr.models.base` defines on top of this module)."""

    config_type: type[ModelConfig]
    model_type: type[nn.Module]


MODELS: Registry[ModelPlugin] = Registry("model", error=UnknownModelError)


def model_config(name: str = DEFAULT_MODEL, /, **options: Any) -> ModelConfig:
    """The config of model ``name``: ``options`` set, the rest at their defaults; an
    option the model does not take is an :class:`UnknownModelError`."""
    config_type = MODELS.get(name).config_type
    return typed_config(config_type, options, owner=f"model '{name}'", error=UnknownModelError)


__all__ = [
    "CHECK",
    "DEFAULT_MODEL",
    "MODELS",
    "V1_FORM",
    "ModelConfig",
    "ModelPlugin",
    "layer_sizes",
    "model_config",
]
