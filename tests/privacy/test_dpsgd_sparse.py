"""Spec of fedctr-sparse end to end: the same update as Opacus, the right noise, the same
accounting, and clear refusals of models and loops it cannot make private."""

from __future__ import annotations

import math

import pytest
import torch
from opacus import PrivacyEngine
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fedctr.privacy.dpsgd
from fedctr.models import build_model, model_config
from fedctr.models.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fedctr.privacy.accounting import PartnerAccountant
from fedctr.privacy.budget import DPSGDRound
from fedctr.privacy.dpsgd import (
    DEFAULT_IMPLEMENTATION,
    PrivateTraining,
    TrainingLoopError,
    UnsupportedLayerError,
    available_implementations,
    get_implementation,
)
from fedctr.privacy.errors import InvalidPrivacyParameter
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


ROWS_PER_FIELD = 500
FIELDS = 4


def deepfm(seed: int = 0) -> nn.Module:
    spec = FeatureSpec(
        name="dpsgd",
        salt="s",
        label="y",
        categorical=tuple(
            CategoricalFeature(name=f"c{i}", buckets=ROWS_PER_FIELD) for i in range(FIELDS)
        ),
        numeric=tuple(NumericFeature(name=f"n{i}") for i in range(3)),
    )
    torch.manual_seed(seed)
    return build_model(spec, model_config("deepfm", hidden=(16, 8)))


def dataset(n: int = 400, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x_cat = torch.randint(0, 40, (n, FIELDS), generator=gen)  # few distinct rows: many repeats
    x_cat[::5, 2:] = 0  # missing values
    x_num = torch.randn(n, 3, generator=gen)
    y = (torch.rand(n, generator=gen) < 0.3).float()
    return TensorDataset(x_cat, x_num, torch.zeros(n, 0), y)


def make(
    implementation: str,
    model: nn.Module,
    *,
    noise_multiplier: float = 0.0,
    max_grad_norm: float = 1.0,
    lr: float = 0.1,
    seed: int = 0,
    data: TensorDataset | None = None,
    engine: PrivacyEngine | None = None,
) -> PrivateTraining:
    loader = DataLoader(data if data is not None else dataset(), batch_size=40)
    return get_implementation(implementation).make_private(
        engine or PrivacyEngine(),
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        sample_rate=RATE,
        steps=STEPS,
        expected_batch_size=BATCH,
        rng=rng_for(seed),
    )


def poisson_batch(rate: float = 0.1, seed: int = 7) -> tuple[torch.Tensor, ...]:
    """One fixed Poisson-sampled batch, fed identically to every implementation."""
    data = dataset()
    keep = torch.rand(len(data), generator=torch.Generator().manual_seed(seed)) < rate
    return tuple(t[keep] for t in data.tensors)


def step(private: PrivateTraining, batch: tuple[torch.Tensor, ...]) -> None:
    *inputs, y = batch
    private.optimizer.zero_grad()
    private.criterion(private.module(*inputs), y).backward()
    private.optimizer.step()


def grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---- the update ---------------------------------------------------------------------


@pytest.mark.parametrize("max_grad_norm", [0.01, 1e3], ids=["all-clipped", "none-clipped"])
def test_one_step_without_noise_equals_opacus_hooks(max_grad_norm):
    """noise_multiplier=0, same Poisson batch: the parameters after one step are Opacus
    hooks mode's (clipped per-example sum divided by the expected batch size)."""
    ours_model, ref_model = deepfm(), deepfm()
    batch = poisson_batch()
    ours = make("fedctr-sparse", ours_model, max_grad_norm=max_grad_norm)
    ref = make("opacus-hooks", ref_model, max_grad_norm=max_grad_norm)

    step(ours, batch)
    step(ref, batch)

    assert ours.optimizer.expected_batch_size == ref.optimizer.expected_batch_size
    assert torch.allclose(grads(ours_model), grads(ref_model), rtol=1e-5, atol=1e-8)
    assert torch.allclose(params(ours_model), params(ref_model), rtol=1e-5, atol=1e-7)
    assert not torch.equal(params(ours_model), params(deepfm()))


def noise_of_one_step(sigma: float, max_grad_norm: float, seed: int):
    """(noise added to every gradient entry, its expected std, mask of untouched rows)."""
    batch = poisson_batch()
    clean_model, noisy_model = deepfm(), deepfm()
    clean = make("fedctr-sparse", clean_model, max_grad_norm=max_grad_norm, lr=0.0)
    noisy = make(
        "fedctr-sparse",
        noisy_model,
        noise_multiplier=sigma,
        max_grad_norm=max_grad_norm,
        lr=0.0,
        seed=seed,
    )
    step(clean, batch)
    step(noisy, batch)
    noise = grads(noisy_model) - grads(clean_model)
    expected_std = sigma * max_grad_norm / noisy.optimizer.expected_batch_size
    table = noisy_model.factors.embedding.weight
    touched = torch.zeros(table.shape[0], dtype=torch.bool)
    touched[(batch[0] + noisy_model.factors.offsets).flatten()] = True
    return noise, expected_std, noisy_model.factors.embedding.weight.grad[~touched]


def test_noise_has_mean_zero_and_std_sigma_c_over_b_on_every_entry():
    """Gaussian noise of std sigma*C/B on every gradient entry, touched or not (fixed seed;
    KS test against N(0, 1) after standardising)."""
    noise, std, untouched_rows = noise_of_one_step(sigma=1.3, max_grad_norm=0.7, seed=1234)
    n = noise.numel()

    assert n > 15_000
    assert abs(float(noise.mean())) < 4 * std / math.sqrt(n)
    assert float(noise.std()) == pytest.approx(std, rel=0.02)
    assert float(untouched_rows.std()) == pytest.approx(std, rel=0.03)
    assert stats.kstest((noise / std).double().numpy(), "norm").pvalue > 1e-3


def test_noised_updates_average_to_opacus_clipped_mean():
    """Averaged over many steps on one batch, the noised gradient converges to the clipped
    mean Opacus computes, at the rate the noise std predicts."""
    batch, steps, sigma, c = poisson_batch(), 200, 1.0, 0.05
    ref_model, model = deepfm(), deepfm()
    step(make("opacus-hooks", ref_model, max_grad_norm=c, lr=0.0), batch)
    private = make("fedctr-sparse", model, noise_multiplier=sigma, max_grad_norm=c, lr=0.0)
    total = torch.zeros_like(grads(ref_model))

    for _ in range(steps):
        step(private, batch)
        total += grads(model)

    std_of_mean = sigma * c / private.optimizer.expected_batch_size / math.sqrt(steps)
    z = (total / steps - grads(ref_model)) / std_of_mean
    assert abs(float(z.mean())) < 4 / math.sqrt(z.numel())
    assert float(z.std()) == pytest.approx(1.0, rel=0.03)


def test_noise_comes_from_the_injected_csprng_only():
    """Same key, same noise; another key, other noise; torch's global RNG is untouched."""
    batch = poisson_batch()
    first, second, other = deepfm(), deepfm(), deepfm()
    runs = [
        make("fedctr-sparse", m, noise_multiplier=1.0, lr=0.0, seed=s)
        for m, s in ((first, 5), (second, 5), (other, 6))
    ]
    state = torch.get_rng_state()

    for private in runs:
        step(private, batch)

    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(grads(first), grads(second))
    assert not torch.allclose(grads(first), grads(other))


def test_empty_poisson_batch_gives_pure_noise_and_counts_a_step():
    """An empty batch (possible under Poisson sampling) updates with noise only and is
    accounted like any other step."""
    engine = PrivacyEngine(accountant="rdp")
    model = deepfm()
    private = make("fedctr-sparse", model, noise_multiplier=1.0, lr=0.0, engine=engine)
    empty = tuple(t[:0] for t in poisson_batch())

    step(private, empty)

    expected = 1.0 / private.optimizer.expected_batch_size
    assert float(grads(model).std()) == pytest.approx(expected, rel=0.05)
    assert engine.accountant.history == [(1.0, RATE, 1)]


# ---- accounting -----------------------------------------------------------------------


def train_one_epoch(implementation: str, sigma: float = 1.1):
    engine = PrivacyEngine(accountant="rdp")
    private = make(implementation, deepfm(), noise_multiplier=sigma, engine=engine, seed=11)
    batches = 0
    for *inputs, y in private.data_loader:
        private.optimizer.zero_grad()
        private.criterion(private.module(*inputs), y).backward()
        private.optimizer.step()
        batches += 1
    return engine, private, batches


def test_accountant_sees_the_declared_rate_and_steps_as_opacus_ghost_does():
    """The engine's accountant records (sigma, declared q, declared steps) exactly as for
    Opacus' ghost mode, and the partner accountant accepts it as the approved round."""
    ours, ours_private, ours_batches = train_one_epoch("fedctr-sparse")
    ghost, ghost_private, _ = train_one_epoch("opacus-ghost")
    rate = RATE

    assert ours_batches == STEPS
    assert ours.accountant.history == ghost.accountant.history == [(1.1, rate, ours_batches)]
    assert ours_private.data_loader.sample_rate == ghost_private.data_loader.sample_rate == RATE
    assert ours_private.optimizer.expected_batch_size == ghost_private.optimizer.expected_batch_size
    partner = PartnerAccountant(kind="rdp")
    release = DPSGDRound(
        noise_multiplier=1.1, sample_rate=rate, steps=ours_batches, max_grad_norm=1.0
    )
    partner.record_opacus_steps(release, ours.accountant)
    assert partner.history == [(1.1, rate, ours_batches)]
    assert partner.epsilon(1e-5) == pytest.approx(ghost.get_epsilon(1e-5))


def test_batches_are_poisson_sampled_from_the_csprng():
    """Declared steps of independently sampled rows: sizes vary around q * rows, and the
    loader never consults torch's global RNG."""
    _, private, _ = train_one_epoch("fedctr-sparse")
    state = torch.get_rng_state()
    sizes = [len(y) for *_, y in private.data_loader]

    assert type(private.data_loader).__name__ == "PoissonLoader"
    assert len(sizes) == STEPS and len(set(sizes)) > 1
    assert sum(sizes) / len(sizes) == pytest.approx(RATE * 400, rel=0.25)
    assert torch.equal(torch.get_rng_state(), state)


# ---- refusals -------------------------------------------------------------------------


class WithBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(10, 2)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids).sum((1, 2)) + self.bias


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)).sum(1)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (WithBias(), "nn.Linear and nn.Embedding"),
        (nn.Sequential(nn.Linear(2, 2), nn.Conv1d(1, 1, 1)), "nn.Linear and nn.Embedding"),
        (nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, affine=False)), "normalises over"),
        (nn.Sequential(nn.Embedding(5, 2, max_norm=1.0)), "max_norm"),
        (Tied(), "share a trainable tensor"),
        (nn.Sequential(nn.Linear(2, 1)).eval(), "training mode"),
    ],
    ids=["bare-parameter", "conv", "batchnorm", "embedding-max-norm", "tied", "eval-mode"],
)
def test_unsupported_models_are_refused_before_training(model, message):
    """Any layer whose per-example gradient would be missing or wrong is refused up front."""
    loader = DataLoader(TensorDataset(torch.zeros(4, 2), torch.zeros(4)), batch_size=2)

    with pytest.raises(UnsupportedLayerError, match=message):
        get_implementation("fedctr-sparse").make_private(
            PrivacyEngine(),
            module=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            data_loader=loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            sample_rate=RATE,
            steps=STEPS,
            expected_batch_size=BATCH,
            rng=rng_for(0),
        )


def test_optimizer_must_hold_every_trainable_parameter():
    """A trainable tensor outside the optimizer is refused (it would be clipped, never
    updated), and a refused model keeps no hooks."""
    model = deepfm()
    loader = DataLoader(dataset(), batch_size=40)

    with pytest.raises(UnsupportedLayerError, match="exactly the model's trainable"):
        get_implementation("fedctr-sparse").make_private(
            PrivacyEngine(),
            module=model,
            optimizer=torch.optim.SGD(model.deep.parameters(), lr=0.1),
            data_loader=loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            sample_rate=RATE,
            steps=STEPS,
            expected_batch_size=BATCH,
            rng=rng_for(0),
        )
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("noise_multiplier", "max_grad_norm"), [(-1.0, 1.0), (1.0, 0.0), (float("nan"), 1.0)]
)
def test_bad_privacy_parameters_are_refused(noise_multiplier, max_grad_norm):
    """Negative or NaN noise and a non-positive clipping norm are refused."""
    with pytest.raises(InvalidPrivacyParameter):
        make(
            "fedctr-sparse",
            deepfm(),
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
        )


def test_two_backward_passes_before_a_step_are_refused():
    """Gradient accumulation across batches would clip the wrong unit; it is refused."""
    private = make("fedctr-sparse", deepfm())
    *inputs, y = poisson_batch()
    private.criterion(private.module(*inputs), y).backward()

    with pytest.raises(TrainingLoopError, match=r"before optimizer\.step"):
        private.criterion(private.module(*inputs), y).backward()


def test_step_needs_a_forward_and_a_backward_pass():
    """step() with nothing recorded, or with a forward but no backward, is refused."""
    private = make("fedctr-sparse", deepfm())
    *inputs, _ = poisson_batch()

    with pytest.raises(TrainingLoopError, match="without a forward pass"):
        private.optimizer.step()
    private.module(*inputs)
    with pytest.raises(TrainingLoopError, match=r"without loss.backward\(\)"):
        private.optimizer.step()


def test_in_place_change_of_a_recorded_input_is_detected():
    """A layer input modified in place after the layer used it would give wrong norms."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    loader = DataLoader(TensorDataset(torch.zeros(4, 3), torch.zeros(4)), batch_size=2)
    private = get_implementation("fedctr-sparse").make_private(
        PrivacyEngine(),
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=loader,
        noise_multiplier=0.0,
        max_grad_norm=1.0,
        sample_rate=RATE,
        steps=STEPS,
        expected_batch_size=BATCH,
        rng=rng_for(0),
    )
    x = torch.randn(4, 3)
    private.criterion(private.module(x).squeeze(1), torch.ones(4)).backward()
    x.mul_(2)

    with pytest.raises(TrainingLoopError, match="modified in place"):
        private.optimizer.step()


# ---- the wrapper ----------------------------------------------------------------------


def test_evaluation_and_unwrap_see_the_plain_model():
    """Under no_grad the private module is the model; unwrap returns the very same object,
    parameters stay trainable, and state_dict keys carry Opacus' ``_module.`` prefix."""
    model = deepfm()
    implementation = get_implementation("fedctr-sparse")
    private = make("fedctr-sparse", model)
    *inputs, y = poisson_batch()

    with torch.no_grad():
        scored = private.module(*inputs)
    step(private, (*inputs, y))

    assert implementation.unwrap(private.module) is model
    assert torch.equal(scored, deepfm()(*inputs).detach())
    assert all(p.requires_grad for p in model.parameters())
    assert set(private.module.state_dict()) == {f"_module.{k}" for k in model.state_dict()}
    assert private.implementation == "fedctr-sparse"


def test_a_model_made_private_again_keeps_one_set_of_hooks():
    """Next round, same model object: the new wrapper trains and the old hooks are gone."""
    model = deepfm()
    make("fedctr-sparse", model)
    hooks_once = sum(len(m._forward_hooks) for m in model.modules())

    again = make("fedctr-sparse", model)
    step(again, poisson_batch())

    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_once
    assert again.optimizer.per_sample_norms is not None


def test_fedctr_sparse_is_registered_and_the_default():
    """The partner trainer's default implementation is the fast path."""
    assert {"opacus-hooks", "opacus-ghost", "fedctr-sparse"} <= set(available_implementations())
    assert DEFAULT_IMPLEMENTATION == "fedctr-sparse"


def test_public_names_import():
    """``from fedctr.privacy.dpsgd import *`` exposes exactly ``__all__``."""
    namespace: dict[str, object] = {}
    exec("from fedctr.privacy.dpsgd import *", namespace)

    assert set(fedctr.privacy.dpsgd.__all__) <= set(namespace)
