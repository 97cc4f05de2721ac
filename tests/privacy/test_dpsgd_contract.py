"""Contract every DP-SGD implementation behind :mod:`privacy.dpsgd.base` honours: the
training loop of the seam runs for exactly the declared steps, the model learns, the
engine's accountant sees one entry per step at (sigma, declared q), untouched rows get
pure noise of std sigma * C / declared batch, and unwrap gives back the model."""

from __future__ import annotations

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models import ModelConfig, build_model
from models.spec import CategoricalFeature, FeatureSpec, NumericFeature
from privacy.dpsgd import PrivateTraining, get_implementation
from privacy.randomness import SecureRandom

pytestmark = [
    pytest.mark.filterwarnings("ignore:Secure RNG turned off"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
]

SIGMA = 0.8
RATE = 0.1  # declared: 10 steps per epoch, whatever the number of rows
BATCH = 60  # declared expected batch size (600 rows x 0.1)


def clicks(n: int = 600) -> TensorDataset:
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
    return build_model(spec, ModelConfig(name="deepfm", hidden=(8,)))


class DPSGDContract:
    """Subclass with ``implementation`` set to a registered name."""

    implementation: str

    def make(
        self, net: nn.Module, optimizer: torch.optim.Optimizer, *, steps: int
    ) -> tuple[PrivateTraining, PrivacyEngine]:
        engine = PrivacyEngine(accountant="rdp")
        private = get_implementation(self.implementation).make_private(
            engine,
            module=net,
            optimizer=optimizer,
            data_loader=DataLoader(clicks(), batch_size=BATCH),
            sample_rate=RATE,
            steps=steps,
            expected_batch_size=BATCH,
            noise_multiplier=SIGMA,
            max_grad_norm=1.0,
            rng=SecureRandom.from_key(bytes(range(32))),
        )
        return private, engine

    def train(self, epochs: int = 3) -> tuple[nn.Module, PrivateTraining, PrivacyEngine, int]:
        net = model()
        torch.manual_seed(1)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        private, engine = self.make(net, optimizer, steps=max(int(epochs / RATE), 1))
        steps = 0
        for *inputs, y in private.data_loader if epochs else []:
            private.optimizer.zero_grad()
            private.criterion(private.module(*inputs), y).backward()
            private.optimizer.step()
            steps += 1
        return net, private, engine, steps

    def test_names_itself(self):
        """The returned bundle names the implementation recorded in model cards."""
        _, private, _, _ = self.train(epochs=0)

        assert private.implementation == self.implementation

    def test_accountant_counts_every_declared_step_at_the_declared_rate(self):
        """One accountant entry (sigma, declared q, steps); the loader ran exactly the
        declared steps, whatever the number of rows."""
        _, private, engine, steps = self.train(epochs=1)

        assert steps == len(private.data_loader) == 10
        assert engine.accountant.history == [(SIGMA, RATE, steps)]

    def test_untouched_rows_get_pure_noise_of_sigma_c_over_the_declared_batch(self):
        """Rows no example touches carry only noise: std sigma * C / B, B declared."""
        net = model(buckets=4000)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
        private, _ = self.make(net, optimizer, steps=1)
        *inputs, y = next(iter(private.data_loader))
        private.optimizer.zero_grad()
        private.criterion(private.module(*inputs), y).backward()
        private.optimizer.step()

        rows = 3 * 4000  # every table holds the three fields' buckets, field f at f * 4000
        touched = torch.zeros(rows, dtype=torch.bool)
        touched[(inputs[0] + torch.arange(3) * 4000).flatten()] = True
        noise = torch.cat(
            [p.grad[~touched].flatten() for p in net.parameters() if p.shape[0] == rows]
        )

        assert noise.numel() > 10_000
        bound = 5 * SIGMA / BATCH / noise.numel() ** 0.5
        assert float(noise.mean()) == pytest.approx(0.0, abs=bound)
        assert float(noise.std()) == pytest.approx(SIGMA * 1.0 / BATCH, rel=0.03)

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


class TestOpacusHooks(DPSGDContract):
    implementation = "opacus-hooks"


class TestOpacusGhost(DPSGDContract):
    implementation = "opacus-ghost"


class TestFedctrSparse(DPSGDContract):
    implementation = "fedctr-sparse"
