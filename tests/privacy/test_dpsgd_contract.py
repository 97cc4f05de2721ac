"""Contract every DP-SGD implementation behind :mod:`fedctr.privacy.dpsgd.base` honours: the
training loop runs for exactly the declared steps; the engine's accountant sees one entry
per step at (sigma, declared q); without noise the update is the clipped sum divided by
the declared expected batch size; the noise has std sigma * C / declared batch, on every
entry and on an empty batch too; the model learns; unwrap gives back the model.

The declared values are chosen apart from everything Opacus would derive from the data
(``1 / len(loader)``, ``rows * q``, the real batch count), so using any of those fails.
"""

from __future__ import annotations

import copy

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedctr.models import build_model, model_config
from fedctr.models.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fedctr.privacy.dpsgd import (
    PrivateTraining,
    SeamArgumentError,
    UnsupportedLayerError,
    get_implementation,
)
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.randomness import SecureRandom

pytestmark = [
    pytest.mark.filterwarnings("ignore:Secure RNG turned off"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
]

ROWS = 600
SIGMA = 0.8
RATE = 0.08  # declared; the loader below has 6 batches (Opacus would sample at 1/6)
BATCH = 45  # declared expected batch size; ROWS * RATE = 48, int(ROWS / 6) = 100
LOADER_BATCH = 100


def clicks(n: int = ROWS) -> TensorDataset:
    """A learnable toy task: the click depends on the first field's bucket."""
    gen = torch.Generator().manual_seed(0)
    x_cat = torch.randint(0, 20, (n, 3), generator=gen)
    y = (x_cat[:, 0] < 10).float()
    return TensorDataset(x_cat, torch.randn(n, 2, generator=gen), torch.zeros(n, 0), y)


def model(buckets: int = 20) -> nn.Module:
    spec = FeatureSpec(
        name="contract",
        salt="s",
        label="y",
        categorical=tuple(CategoricalFeature(name=f"c{i}", buckets=buckets) for i in range(3)),
        numeric=(NumericFeature(name="n0"), NumericFeature(name="n1")),
    )
    torch.manual_seed(0)
    return build_model(spec, model_config("deepfm", hidden=(8,)))


def step(private: PrivateTraining, batch: tuple[torch.Tensor, ...]) -> None:
    *inputs, y = batch
    private.optimizer.zero_grad()
    private.criterion(private.module(*inputs), y).backward()
    private.optimizer.step()


class DPSGDContract:
    """Subclass with ``implementation`` set to a registered name."""

    implementation: str

    def make(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        steps: int,
        sigma: float = SIGMA,
        max_grad_norm: float = 1.0,
    ) -> tuple[PrivateTraining, PrivacyEngine]:
        engine = PrivacyEngine(accountant="rdp")
        private = get_implementation(self.implementation).make_private(
            engine,
            module=net,
            optimizer=optimizer,
            data_loader=DataLoader(clicks(), batch_size=LOADER_BATCH),
            sample_rate=RATE,
            steps=steps,
            expected_batch_size=BATCH,
            noise_multiplier=sigma,
            max_grad_norm=max_grad_norm,
            rng=SecureRandom.from_key(bytes(range(32))),
        )
        return private, engine

    def train(self, epochs: int = 3) -> tuple[nn.Module, PrivateTraining, PrivacyEngine, int]:
        net = model()
        torch.manual_seed(1)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        private, engine = self.make(net, optimizer, steps=round(epochs / RATE))
        steps = 0
        for batch in private.data_loader:
            step(private, batch)
            steps += 1
        return net, private, engine, steps

    def test_names_itself(self):
        """The returned bundle names the implementation recorded in model cards."""
        _, private, _, _ = self.train(epochs=0)

        assert private.implementation == self.implementation

    def test_accountant_counts_every_declared_step_at_the_declared_rate(self):
        """One accountant entry (sigma, declared q, steps); the loader ran exactly the
        declared steps (12), whatever the number of rows or the loader's batches (6)."""
        _, private, engine, steps = self.train(epochs=1)

        assert steps == len(private.data_loader) == 12
        assert engine.accountant.history == [(SIGMA, RATE, 12)]
        assert private.optimizer.expected_batch_size == BATCH

    def test_without_noise_the_update_is_the_clipped_sum_over_the_declared_batch(self):
        """sigma = 0, no clipping: .grad is the sum of per-example gradients divided by the
        declared B (not by the batch's row count, nor by rows * q)."""
        net = model()
        reference = copy.deepcopy(net)
        private, _ = self.make(
            net, torch.optim.SGD(net.parameters(), lr=0.0), steps=1, sigma=0.0, max_grad_norm=1e6
        )
        batch = next(iter(private.data_loader))
        step(private, batch)
        *inputs, y = batch
        nn.functional.binary_cross_entropy_with_logits(
            reference(*inputs), y, reduction="sum"
        ).backward()

        assert 30 < len(y) != BATCH
        for got, want in zip(net.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got.grad, want.grad / BATCH, rtol=1e-4, atol=1e-7)

    def test_clipping_bounds_each_example_to_c_over_the_declared_batch(self):
        """sigma = 0, tiny C: every example is clipped to norm C, so the update's norm is at
        most (rows in the batch) * C / B, and close to it when gradients align."""
        net = model()
        private, _ = self.make(
            net, torch.optim.SGD(net.parameters(), lr=0.0), steps=1, sigma=0.0, max_grad_norm=1e-3
        )
        batch = next(iter(private.data_loader))
        step(private, batch)
        norm = float(torch.cat([p.grad.flatten() for p in net.parameters()]).norm())

        assert 0 < norm <= len(batch[-1]) * 1e-3 / BATCH * (1 + 1e-4)

    def test_untouched_rows_get_pure_noise_of_sigma_c_over_the_declared_batch(self):
        """Rows no example touches carry only noise: mean 0, std sigma * C / B with B the
        declared 45 (rows * q = 48 would be 6% off)."""
        net = model(buckets=4000)
        private, _ = self.make(net, torch.optim.SGD(net.parameters(), lr=0.0), steps=1)
        batch = next(iter(private.data_loader))
        step(private, batch)

        rows = 3 * 4000  # every table holds the three fields' buckets, field f at f * 4000
        touched = torch.zeros(rows, dtype=torch.bool)
        touched[(batch[0] + torch.arange(3) * 4000).flatten()] = True
        noise = torch.cat(
            [p.grad[~touched].flatten() for p in net.parameters() if p.shape[0] == rows]
        )

        assert noise.numel() > 10_000
        bound = 5 * SIGMA / BATCH / noise.numel() ** 0.5
        assert float(noise.mean()) == pytest.approx(0.0, abs=bound)
        assert float(noise.std()) == pytest.approx(SIGMA * 1.0 / BATCH, rel=0.03)

    def test_an_empty_batch_is_a_noised_and_accounted_step(self):
        """No row sampled: the step still adds noise of std sigma * C / B to every entry and
        counts for the accountant (skipping it would reveal the empty draw); training then
        goes on with ordinary batches."""
        net = model(buckets=4000)
        private, engine = self.make(net, torch.optim.SGD(net.parameters(), lr=0.0), steps=1)
        empty = tuple(t[:0] for t in clicks().tensors)

        step(private, empty)
        grads = torch.cat([p.grad.flatten() for p in net.parameters()])
        for batch in (clicks(40).tensors, empty, clicks(30).tensors):
            step(private, batch)

        assert grads.numel() > 30_000
        assert float(grads.std()) == pytest.approx(SIGMA / BATCH, rel=0.03)
        assert engine.accountant.history == [(SIGMA, RATE, 4)]

    def test_learns_and_unwraps_to_the_same_model(self):
        """A few private epochs beat chance on an easy task; unwrap returns the input model."""
        net, private, _, _ = self.train()
        x_cat, x_num, x_dense, y = clicks(300).tensors

        with torch.no_grad():
            accuracy = ((net(x_cat, x_num, x_dense) > 0).float() == y).float().mean()

        assert get_implementation(self.implementation).unwrap(private.module) is net
        assert float(accuracy) > 0.8

    def test_criterion_is_mean_binary_cross_entropy_on_logits(self):
        """The criterion is BCE with logits, mean reduction (read through ``.item()``, which
        Opacus ghost mode's loss wrapper also offers)."""
        _, private, _, _ = self.train(epochs=0)
        logits, y = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([1.0, 0.0, 0.0])

        loss = private.criterion(logits, y)

        assert loss.item() == pytest.approx(
            float(nn.functional.binary_cross_entropy_with_logits(logits, y))
        )

    def test_noise_and_sampling_leave_torch_global_rng_alone(self):
        """Everything random comes from the SecureRandom: torch's generator is untouched."""
        state = torch.get_rng_state()
        net = model()
        torch.set_rng_state(state)
        private, _ = self.make(net, torch.optim.SGD(net.parameters(), lr=0.0), steps=3)

        for batch in private.data_loader:
            step(private, batch)

        assert torch.equal(torch.get_rng_state(), state)

    @pytest.mark.parametrize(
        ("change", "error"),
        [
            ({"rng": torch.Generator()}, SeamArgumentError),
            ({"sample_rate": 0.0}, InvalidPrivacyParameter),
            ({"sample_rate": 1.5}, InvalidPrivacyParameter),
            ({"steps": -1}, InvalidPrivacyParameter),
            ({"expected_batch_size": 0}, InvalidPrivacyParameter),
            ({"expected_batch_size": 45.0}, InvalidPrivacyParameter),
            ({"noise_multiplier": float("nan")}, InvalidPrivacyParameter),
            ({"max_grad_norm": 0.0}, InvalidPrivacyParameter),
            ({"engine": PrivacyEngine(secure_mode=False)}, None),
            ({"data_loader": DataLoader(list(range(5)))}, SeamArgumentError),
            ({"double": True}, UnsupportedLayerError),
        ],
        ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
    )
    def test_bad_arguments_are_refused_before_anything_is_wrapped(self, change, error):
        """Undeclared-looking, insecure or unsupported arguments raise a fedctr error and
        leave the model without hooks; a good engine is accepted."""
        change = dict(change)  # shared by the three implementations' runs
        net = model().double() if change.pop("double", False) else model()
        kwargs = {
            "module": net,
            "optimizer": torch.optim.SGD(net.parameters(), lr=0.0),
            "data_loader": DataLoader(clicks(), batch_size=LOADER_BATCH),
            "sample_rate": RATE,
            "steps": 1,
            "expected_batch_size": BATCH,
            "noise_multiplier": SIGMA,
            "max_grad_norm": 1.0,
            "rng": SecureRandom.from_key(bytes(32)),
        }
        engine = change.pop("engine", PrivacyEngine())
        kwargs.update(change)
        implementation = get_implementation(self.implementation)

        if error is None:
            implementation.make_private(engine, **kwargs)
            return
        with pytest.raises(error):
            implementation.make_private(engine, **kwargs)
        assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())


class TestOpacusHooks(DPSGDContract):
    implementation = "opacus-hooks"


class TestOpacusGhost(DPSGDContract):
    implementation = "opacus-ghost"


class TestFedctrSparse(DPSGDContract):
    implementation = "fedctr-sparse"
