"""The seam between a partner's training loop and a DP-SGD implementation.

Every implementation gives the same guarantee (per-example clipping to
``max_grad_norm`` over all parameters, Gaussian noise of std
``noise_multiplier * max_grad_norm`` on the summed gradient, divided by the
declared ``expected_batch_size``; Poisson sampling at the declared ``sample_rate``
for exactly ``steps`` steps; noise and sampling from a
:class:`~privacy.randomness.SecureRandom`) and steps the Opacus accountant of the
PrivacyEngine it is given at that rate. They differ only in speed and memory.

The training loop is the same for all (the loader yields ``steps`` batches)::

    for *inputs, y in private.data_loader:
        private.optimizer.zero_grad()
        loss = private.criterion(private.module(*inputs), y)
        loss.backward()
        private.optimizer.step()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader

from privacy.randomness import SecureRandom

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PrivateTraining:
    """What a DP-SGD implementation hands back to the training loop."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: DataLoader
    criterion: Criterion
    implementation: str


class DPSGDImplementation(ABC):
    """One way of running DP-SGD under an Opacus PrivacyEngine."""

    name: str

    @abstractmethod
    def make_private(
        self,
        engine: PrivacyEngine,
        *,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader,
        sample_rate: float,
        steps: int,
        expected_batch_size: int,
        noise_multiplier: float,
        max_grad_norm: float,
        rng: SecureRandom,
    ) -> PrivateTraining:
        """Wrap model, optimizer and loader; the criterion is binary cross-entropy on logits
        with mean reduction. The loader must be a plain loader: its dataset is
        re-batched by Poisson sampling at ``sample_rate`` for ``steps`` steps
        (:func:`privacy.dpsgd.sampling.poisson_loader`). Every argument is declared
        by the partner's config: none may depend on the number of rows."""

    @abstractmethod
    def unwrap(self, module: nn.Module) -> nn.Module:
        """The original model inside a wrapped module (for ``state_dict``)."""


__all__ = ["Criterion", "DPSGDImplementation", "PrivateTraining"]
