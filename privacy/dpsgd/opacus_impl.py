"""Opacus' own DP-SGD modes: per-sample-gradient hooks and ghost clipping."""

from __future__ import annotations

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader

from privacy.dpsgd.base import DPSGDImplementation, PrivateTraining
from privacy.dpsgd.registry import register_implementation


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="mean")


@register_implementation("opacus-hooks")
class OpacusHooks(DPSGDImplementation):
    """Materialises every per-sample gradient: exact and simple, slow for big tables."""

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
        module, optimizer, loader = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=data_loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_generator,
            grad_sample_mode="hooks",
        )
        return PrivateTraining(module, optimizer, loader, _bce, self.name)

    def unwrap(self, module: nn.Module) -> nn.Module:
        return getattr(module, "_module", module)


@register_implementation("opacus-ghost")
class OpacusGhost(DPSGDImplementation):
    """Opacus ghost clipping: norms without per-sample gradients, two backward passes."""

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
        module, optimizer, criterion, loader = engine.make_private(
            module=module,
            optimizer=optimizer,
            criterion=nn.BCEWithLogitsLoss(reduction="mean"),
            data_loader=data_loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_generator,
            grad_sample_mode="ghost",
        )
        return PrivateTraining(module, optimizer, loader, criterion, self.name)

    def unwrap(self, module: nn.Module) -> nn.Module:
        return getattr(module, "_module", module)
