"""Spec of fedctr-sparse's per-example gradient norms: equal to Opacus' per-sample
gradients (hooks mode) or to exact one-example-at-a-time autograd, within 1e-5 relative,
including repeated indices within one example, missing bucket 0 and padding rows."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus import PrivacyEngine
from opacus.grad_sample import GradSampleModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedctr.models import ModelConfig, build_model, registered_models
from fedctr.models.spec import CategoricalFeature, EmbeddingFeature, FeatureSpec, NumericFeature
from fedctr.privacy.dpsgd import get_implementation, sparse_norms
from fedctr.privacy.randomness import SecureRandom

pytestmark = [
    pytest.mark.filterwarnings("ignore:Secure RNG turned off"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
]

RATE = 0.1  # declared Poisson rate (400 rows: 40 expected per batch)
STEPS = 10
BATCH = 40


def rng_for(seed: int) -> SecureRandom:
    """A reproducible CSPRNG stream per seed (never a production key)."""
    return SecureRandom.from_key(seed.to_bytes(32, "little"))


REL = 1e-5


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, y)


def sparse_norms_of(model: nn.Module, inputs: tuple[torch.Tensor, ...], y: torch.Tensor):
    """Per-example norms fedctr-sparse computes for one batch (no clipping, no noise)."""
    model = copy.deepcopy(model)
    loader = DataLoader(TensorDataset(*inputs, y), batch_size=max(len(y) // 2, 1))
    private = get_implementation("fedctr-sparse").make_private(
        PrivacyEngine(),
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        data_loader=loader,
        noise_multiplier=0.0,
        max_grad_norm=1.0,
        sample_rate=RATE,
        steps=STEPS,
        expected_batch_size=BATCH,
        rng=rng_for(0),
    )
    private.optimizer.zero_grad()
    private.criterion(private.module(*inputs), y).backward()
    private.optimizer.step()
    return private.optimizer.per_sample_norms


def opacus_norms_of(model: nn.Module, inputs: tuple[torch.Tensor, ...], y: torch.Tensor):
    """Opacus' reference: materialised per-sample gradients (hooks mode), flat norm."""
    wrapped = GradSampleModule(copy.deepcopy(model), loss_reduction="mean")
    bce(wrapped(*inputs), y).backward()
    per_sample = [
        p.grad_sample.reshape(len(y), -1) for p in wrapped.parameters() if p.requires_grad
    ]
    return torch.cat(per_sample, dim=1).norm(dim=1)


def exact_norms_of(model: nn.Module, inputs: tuple[torch.Tensor, ...], y: torch.Tensor):
    """Ground truth: autograd on each example alone, in float64."""
    model = copy.deepcopy(model).double()
    norms = []
    for i in range(len(y)):
        model.zero_grad()
        one = [x[i : i + 1].double() if x.is_floating_point() else x[i : i + 1] for x in inputs]
        bce(model(*one), y[i : i + 1].double()).backward()
        grads = [p.grad.flatten() for p in model.parameters() if p.requires_grad]
        norms.append(torch.cat(grads).norm())
    return torch.stack(norms).float()


class BagOfEmbeddings(nn.Module):
    """Sum of looked-up rows, through a linear head; the table is used twice per example."""

    def __init__(self, rows: int = 12, dim: int = 3, padding_idx: int | None = None) -> None:
        super().__init__()
        self.table = nn.Embedding(rows, dim, padding_idx=padding_idx)
        self.head = nn.Linear(dim, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        bag = torch.relu(self.table(ids).sum(1))
        first = self.table(ids[:, :1]).sum(1)
        return (self.head(bag) + self.head(first)).squeeze(1)


# Row 0: one index four times; row 1: all distinct; rows 2-3: missing bucket 0 repeated.
IDS = torch.tensor([[3, 3, 3, 3], [1, 2, 4, 5], [0, 7, 0, 0], [0, 0, 6, 6], [9, 1, 9, 0]])
LABELS = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])


def test_repeated_indices_and_missing_bucket_match_opacus_hooks():
    """Rows looked up several times by one example (and the missing bucket 0 repeated)
    are summed before squaring, exactly as in Opacus' materialised per-sample gradient."""
    torch.manual_seed(0)
    model = BagOfEmbeddings()

    ours = sparse_norms_of(model, (IDS,), LABELS)

    assert torch.allclose(ours, opacus_norms_of(model, (IDS,), LABELS), rtol=REL, atol=0)
    assert torch.allclose(ours, exact_norms_of(model, (IDS,), LABELS), rtol=REL, atol=0)


def test_padding_row_gets_no_gradient_and_no_norm():
    """With ``padding_idx`` the padding row's gradient is zero (as F.embedding defines it);
    the norms equal exact per-example autograd. Opacus' hooks sampler would count the padding
    positions, so exact autograd is the reference here."""
    torch.manual_seed(0)
    model = BagOfEmbeddings(padding_idx=0)

    ours = sparse_norms_of(model, (IDS,), LABELS)

    assert torch.allclose(ours, exact_norms_of(model, (IDS,), LABELS), rtol=REL, atol=0)


class SequenceMLP(nn.Module):
    """A linear layer on ``[N, T, d]`` inputs followed by an in-place ReLU."""

    def __init__(self, d_in: int, d_out: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.inner = nn.Linear(d_in, d_out)
        self.head = nn.Linear(d_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.inner(x.view(x.shape[0], self.steps, -1))
        return self.head(torch.relu_(hidden).sum(1)).squeeze(1)


@pytest.mark.parametrize(
    ("d_in", "d_out", "steps"),
    [(3, 4, 5), (30, 40, 2)],
    ids=["explicit-per-example", "gram"],
)
def test_linear_on_sequences_matches_exact(d_in, d_out, steps):
    """Both ways of norming a linear layer applied at several positions (explicit
    per-example gradient, Gram identity) give the exact norm, through in-place ops."""
    torch.manual_seed(1)
    model = SequenceMLP(d_in, d_out, steps)
    x = torch.randn(6, steps * d_in)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])

    ours = sparse_norms_of(model, (x,), y)

    assert torch.allclose(ours, exact_norms_of(model, (x,), y), rtol=REL, atol=0)


def small_spec() -> FeatureSpec:
    return FeatureSpec(
        name="norms",
        salt="s",
        label="y",
        categorical=tuple(CategoricalFeature(name=f"c{i}", buckets=30) for i in range(4)),
        numeric=tuple(NumericFeature(name=f"n{i}") for i in range(3)),
        embedding=(EmbeddingFeature(name="text", dim=5, modality="text"),),
    )


@pytest.mark.parametrize("name", registered_models())
def test_every_model_matches_opacus_hooks(name):
    """All CTR models (one FieldEmbedding table per role, linear layers, elementwise ops):
    per-example norms equal Opacus' hooks mode, with several missing (bucket 0) fields."""
    torch.manual_seed(2)
    spec = small_spec()
    model = build_model(
        spec, ModelConfig.from_dict({"name": name, "hidden": (16, 8), "cross_rank": 4})
    )
    n = 24
    x_cat = torch.randint(0, 30, (n, 4))
    x_cat[::3, 1:] = 0
    inputs = (x_cat, torch.randn(n, 3), torch.randn(n, 5))
    y = (torch.rand(n) < 0.4).float()

    ours = sparse_norms_of(model, inputs, y)

    assert torch.allclose(ours, opacus_norms_of(model, inputs, y), rtol=REL, atol=0)


def dense_reference(indices: torch.Tensor, grads: torch.Tensor, rows: int) -> torch.Tensor:
    """Squared norms from the dense per-example gradient ``[N, rows, D]`` (float64)."""
    n, _, dim = grads.shape
    dense = torch.zeros(n, rows, dim, dtype=torch.float64)
    dense.scatter_add_(1, indices.unsqueeze(2).expand(-1, -1, dim), grads.double())
    return dense.pow(2).sum((1, 2))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    lookups=st.integers(1, 40),
    rows=st.integers(1, 8),
    dim=st.integers(1, 4),
    seed=st.integers(0, 2**31),
)
def test_embedding_norms_equal_dense_reference(n, lookups, rows, dim, seed):
    """Any pattern of repeats (few rows, many lookups: lots of collisions) gives the norm of
    the dense per-example gradient."""
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randint(0, rows, (n, lookups), generator=gen)
    grads = torch.randn(n, lookups, dim, generator=gen)

    ours = sparse_norms.embedding_norm_sq(indices, grads)

    assert torch.allclose(ours, dense_reference(indices, grads, rows).float(), rtol=REL, atol=1e-6)


def test_cancelling_repeats_keep_float32_precision():
    """Two lookups of one row whose gradients almost cancel: the tiny norm is exact, because
    rows are summed before squaring."""
    big = torch.full((1, 1, 4), 1024.0)
    grads = torch.cat([big, -big + 2**-7], dim=1)  # exactly representable in float32

    ours = sparse_norms.embedding_norm_sq(torch.tensor([[5, 5]]), grads)

    assert float(ours) == pytest.approx(4 * 2**-14, rel=1e-6)


def test_frozen_parameters_do_not_count():
    """A frozen layer contributes nothing to the norm, as in Opacus."""
    torch.manual_seed(4)
    model = BagOfEmbeddings()
    model.head.requires_grad_(False)

    ours = sparse_norms_of(model, (IDS,), LABELS)

    assert torch.allclose(ours, opacus_norms_of(model, (IDS,), LABELS), rtol=REL, atol=0)
