"""Contract every DP-SGD implementation behind :mod:`privacy.dpsgd.base` honours: the
training loop of the seam runs, the model learns, the engine's accountant sees one entry
per step at (sigma, 1/len(loader)), and unwrap gives back the model that was passed in."""

from __future__ import annotations

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models import ModelConfig, build_model
from models.spec import CategoricalFeature, FeatureSpec, NumericFeature
from privacy.dpsgd import PrivateTraining, get_implementation

pytestmark = [
    pytest.mark.filterwarnings("ignore:Secure RNG turned off"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
]

SIGMA = 0.8


def clicks(n: int = 600) -> TensorDataset:
    """A learnable toy task: the click depends on the first field's bucket."""
    gen = torch.Generator().manual_seed(0)
    x_cat = torch.randint(0, 20, (n, 3), generator=gen)
    y = (x_cat[:, 0] < 10).float()
    return TensorDataset(x_cat, torch.randn(n, 2, generator=gen), torch.zeros(n, 0), y)


def model() -> nn.Module:
    spec = FeatureSpec(
        name="contract",
        salt="s",
        label="y",
        categorical=tuple(CategoricalFeature(name=f"c{i}", buckets=20) for i in range(3)),
        numeric=(NumericFeature(name="n0"), NumericFeature(name="n1")),
    )
    torch.manual_seed(0)
    return build_model(spec, ModelConfig(name="deepfm", hidden=(8,)))


class DPSGDContract:
    """Subclass with ``implementation`` set to a registered name."""

    implementation: str

    def train(self, epochs: int = 3) -> tuple[nn.Module, PrivateTraining, PrivacyEngine, int]:
        net = model()
        engine = PrivacyEngine(accountant="rdp")
        torch.manual_seed(1)
        private = get_implementation(self.implementation).make_private(
            engine,
            module=net,
            optimizer=torch.optim.Adam(net.parameters(), lr=0.05),
            data_loader=DataLoader(clicks(), batch_size=60),
            noise_multiplier=SIGMA,
            max_grad_norm=1.0,
            noise_generator=torch.Generator().manual_seed(2),
        )
        steps = 0
        for _ in range(epochs):
            for *inputs, y in private.data_loader:
                private.optimizer.zero_grad()
                private.criterion(private.module(*inputs), y).backward()
                private.optimizer.step()
                steps += 1
        return net, private, engine, steps

    def test_names_itself(self):
        """The returned bundle names the implementation recorded in model cards."""
        _, private, _, _ = self.train(epochs=0)

        assert private.implementation == self.implementation

    def test_accountant_counts_every_step_at_the_loader_rate(self):
        """One accountant entry (sigma, 1/len(loader), steps) for the whole run."""
        _, private, engine, steps = self.train(epochs=1)

        assert engine.accountant.history == [(SIGMA, 1 / len(private.data_loader), steps)]
        assert 1 / len(private.data_loader) == pytest.approx(0.1)

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
