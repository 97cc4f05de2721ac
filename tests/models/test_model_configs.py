"""Typed model configs: each model takes its own options, registered beside it; cards
and wire messages keep the v1 form."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from fedctr.models import (
    FeatureSpec,
    LRConfig,
    ModelConfig,
    ModelConfigError,
    UnknownModelError,
    build_model,
    model_config,
    register_model,
    registered_models,
)
from fedctr.models.config import CHECK, MODELS
from fedctr.models.lr import LogisticRegression

V1_DEFAULTS = {
    "embed_dim": 8,
    "hidden": [64, 32],
    "cross_layers": 2,
    "cross_rank": 16,
    "modality_proj": 128,
    "fused_dim": 64,
}


@pytest.mark.parametrize("name", ["lr", "fm", "deepfm", "dcnv2", "fusion"])
def test_a_default_config_serializes_to_the_v1_form(name: str) -> None:
    d = model_config(name).to_dict()

    assert d == {"name": name, **V1_DEFAULTS}
    assert list(d) == ["name", *V1_DEFAULTS]  # key order too: cards are hashed as written
    assert ModelConfig.from_dict(d) == model_config(name)


def test_a_model_takes_only_its_own_options() -> None:
    assert model_config("dcnv2", cross_rank=4, hidden=[16, 8]).to_dict() == {
        "name": "dcnv2",
        **V1_DEFAULTS,
        "hidden": [16, 8],
        "cross_rank": 4,
    }
    with pytest.raises(
        UnknownModelError, match="model 'lr' has no option 'embed_dim'; it takes no"
    ):
        model_config("lr", embed_dim=16)
    with pytest.raises(
        UnknownModelError,
        match="model 'deepfm' has no option 'embedding_dim'; it takes embed_dim, hidden",
    ):
        ModelConfig.from_dict({"name": "deepfm", "embedding_dim": 16})


def test_an_unknown_model_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"unknown model 'xgboost'; choose one of \("):
        model_config("xgboost")
    with pytest.raises(UnknownModelError, match="choose one of"):
        ModelConfig.from_dict({"name": "xgboost"})


def test_a_v1_key_the_model_ignores_is_read_from_old_cards_and_checked_as_v1_did() -> None:
    assert ModelConfig.from_dict({"name": "lr", **V1_DEFAULTS, "embed_dim": 16}) == LRConfig()
    assert ModelConfig.from_dict({}) == model_config("deepfm")
    with pytest.raises(ModelConfigError, match="embed_dim must be a positive integer"):
        ModelConfig.from_dict({"name": "lr", "embed_dim": 0})
    with pytest.raises(ModelConfigError, match="hidden sizes must be positive"):
        ModelConfig.from_dict({"name": "fm", "hidden": [8, 0]})


def test_a_config_of_another_model_is_refused(demo_spec: FeatureSpec) -> None:
    @dataclass(frozen=True)
    class Impostor(ModelConfig):
        name: ClassVar[str] = "lr"

    with pytest.raises(ModelConfigError, match="built from a LRConfig, not a Impostor"):
        build_model(demo_spec, Impostor())


@dataclass(frozen=True)
class WideLRConfig(ModelConfig):
    """A plug-in's own config: ``copies`` of a logistic regression, averaged."""

    name: ClassVar[str] = "test-wide-lr"
    copies: int = 2

    def __post_init__(self) -> None:
        CHECK.integer(self.copies, "copies", minimum=1)


class WideLR(LogisticRegression):
    def __init__(self, spec: FeatureSpec, config: WideLRConfig) -> None:
        super().__init__(spec, LRConfig())
        self.config = config
        self.extra = nn.ModuleList(
            LogisticRegression(spec, LRConfig()) for _ in range(config.copies - 1)
        )

    def forward(
        self, x_cat: torch.Tensor, x_num: torch.Tensor, x_dense: torch.Tensor
    ) -> torch.Tensor:
        outs = [super().forward(x_cat, x_num, x_dense)]
        outs += [m(x_cat, x_num, x_dense) for m in self.extra]
        return torch.stack(outs).mean(dim=0)


@pytest.fixture
def wide_lr() -> Iterator[str]:
    register_model(WideLRConfig)(WideLR)
    yield WideLRConfig.name
    MODELS.remove(WideLRConfig.name)


def test_a_new_model_registers_with_its_own_typed_config(
    wide_lr: str, demo_spec: FeatureSpec
) -> None:
    assert wide_lr in registered_models()
    config = model_config(wide_lr, copies=3)
    assert config == WideLRConfig(copies=3)

    model = build_model(demo_spec, config)
    assert isinstance(model, WideLR) and len(model.extra) == 2

    wire = config.to_dict()  # the v1 keys at their defaults, then the plug-in's own
    assert wire == {"name": wide_lr, **V1_DEFAULTS, "copies": 3}
    assert ModelConfig.from_dict(wire) == config
    with pytest.raises(UnknownModelError, match=f"model '{wide_lr}' has no option 'copy'"):
        ModelConfig.from_dict({"name": wide_lr, "copy": 3})
    with pytest.raises(ModelConfigError, match="copies must be a positive integer"):
        model_config(wide_lr, copies=0)
    with pytest.raises(ValueError, match=f"model '{wide_lr}' is already registered"):
        register_model(WideLRConfig)(WideLR)
