"""Every CTR model: one signature, trainable under both Opacus modes."""

from __future__ import annotations

import pytest
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from fedctr.models import FeatureSpec, build_model, model_config, registered_models
from fedctr.models.errors import UnknownModelError
from fedctr.privacy.dpsgd import get_implementation
from fedctr.privacy.randomness import SecureRandom


def _batch(spec: FeatureSpec, n: int = 64):
    g = torch.Generator().manual_seed(0)
    x_cat = torch.stack([torch.randint(0, b, (n,), generator=g) for b in spec.bucket_sizes], 1)
    return (
        x_cat,
        torch.randn(n, spec.num_numeric, generator=g),
        torch.randn(n, spec.dense_dim(), generator=g),
        torch.randint(0, 2, (n,), generator=g).float(),
    )


def test_registry_lists_the_five_models() -> None:
    assert set(registered_models()) == {"lr", "fm", "deepfm", "dcnv2", "fusion"}


def test_unknown_model_name_is_a_clear_error(demo_spec: FeatureSpec) -> None:
    with pytest.raises(UnknownModelError, match="choose one of"):
        build_model(demo_spec, model_config("xgboost"))


@pytest.mark.parametrize("name", ["lr", "fm", "deepfm", "dcnv2", "fusion"])
def test_forward_returns_one_logit_per_row(demo_spec: FeatureSpec, name: str) -> None:
    x_cat, x_num, x_dense, _ = _batch(demo_spec)
    out = build_model(demo_spec, model_config(name))(x_cat, x_num, x_dense)

    assert out.shape == (64,)
    assert torch.isfinite(out).all()


def test_fusion_projects_each_modality_to_128_then_fuses_to_64(demo_spec: FeatureSpec) -> None:
    """The multimodal tower matches the design: text/image -> 128 each -> 64 fused."""
    model = build_model(demo_spec, model_config("fusion"))

    assert model.projections["text"].out_features == 128
    assert model.projections["image"].out_features == 128
    assert model.fuse.out_features == 64
    assert model.fused(torch.randn(3, demo_spec.dense_dim())).shape == (3, 64)


@pytest.mark.parametrize("impl", ["opacus-hooks", "opacus-ghost"])
@pytest.mark.parametrize("name", ["lr", "fm", "deepfm", "dcnv2", "fusion"])
def test_every_model_trains_under_opacus(demo_spec: FeatureSpec, name: str, impl: str) -> None:
    """No model has a layer Opacus cannot clip (e.g. a bare nn.Parameter or EmbeddingBag)."""
    model = build_model(demo_spec, model_config(name))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    engine = PrivacyEngine(accountant="rdp")
    private = get_implementation(impl).make_private(
        engine,
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(*_batch(demo_spec, 128)), batch_size=32),
        sample_rate=0.25,
        steps=4,
        expected_batch_size=32,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        rng=SecureRandom.fresh(),
    )
    for *inputs, y in private.data_loader:
        private.optimizer.zero_grad()
        private.criterion(private.module(*inputs), y).backward()
        private.optimizer.step()

    assert engine.accountant.history == [(1.0, 0.25, 4)]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
