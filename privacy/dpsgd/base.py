"""The seam between a partner's training loop and a DP-SGD implementation.

Every implementation gives the same guarantee (per-example clipping to
``max_grad_norm`` over all parameters, Gaussian noise of std
``noise_multiplier * max_grad_norm`` on the summed gradient, Poisson sampling) and
steps the Opacus accountant of the PrivacyEngine it is given. They differ only in
speed and memory.

The training loop is the same for all::

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
        noise_multiplier: float,
        max_grad_norm: float,
        noise_generator: torch.Generator,
    ) -> PrivateTraining:
        """Wrap model, optimizer and loader; the criterion is binary cross-entropy on logits
        with mean reduction. The loader must be a plain loader: it is replaced by
        Poisson sampling at rate ``1 / len(data_loader)``."""

    @abstractmethod
    def unwrap(self, module: nn.Module) -> nn.Module:
        """The original model inside a wrapped module (for ``state_dict``)."""


__all__ = ["Criterion", "DPSGDImplementation", "PrivateTraining"]
