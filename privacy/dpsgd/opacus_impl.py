"""Opacus' own DP-SGD modes: per-sample-gradient hooks and ghost clipping.

Opacus does the clipping. Sampling, the accountant's rate, the averaging constant and
the noise follow the seam's declared values instead of Opacus' defaults (rate
``1 / len(loader)``, batch ``rows * rate``, noise from torch's generator):

- the loader is :func:`~privacy.dpsgd.sampling.poisson_loader` (declared rate and
  steps, CSPRNG), handed to Opacus with ``poisson_sampling=False``;
- the optimizer's accountant hook is re-attached at the declared rate and its
  ``expected_batch_size`` set to the declared one;
- its ``add_noise`` draws from :class:`~privacy.randomness.SecureRandom`.
"""

from __future__ import annotations

import types

import torch
from opacus import PrivacyEngine
from opacus.optimizers.optimizer import DPOptimizer, _check_processed_flag, _mark_as_processed
from torch import nn
from torch.utils.data import DataLoader

from privacy.dpsgd.base import DPSGDImplementation, PrivateTraining
from privacy.dpsgd.registry import register_implementation
from privacy.dpsgd.sampling import poisson_loader
from privacy.errors import InvalidPrivacyParameter
from privacy.randomness import SecureRandom


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="mean")


def _secure_add_noise(optimizer: DPOptimizer, rng: SecureRandom) -> None:
    """``DPOptimizer.add_noise`` with the noise drawn from ``rng``."""
    std = optimizer.noise_multiplier * optimizer.max_grad_norm
    for p in optimizer.params:
        _check_processed_flag(p.summed_grad)
        noise = torch.empty_like(p.summed_grad, dtype=torch.float32).contiguous()
        rng.gaussian_(noise, std=std)
        p.grad = (p.summed_grad + noise.to(p.summed_grad.dtype)).view_as(p)
        _mark_as_processed(p.summed_grad)


def _declare(
    engine: PrivacyEngine,
    optimizer: DPOptimizer,
    *,
    sample_rate: float,
    expected_batch_size: int,
    rng: SecureRandom,
) -> None:
    """Point an Opacus optimizer at the declared rate, batch size and noise source."""
    optimizer.expected_batch_size = expected_batch_size
    optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    optimizer.add_noise = types.MethodType(lambda self: _secure_add_noise(self, rng), optimizer)


def _private(
    engine: PrivacyEngine,
    *,
    mode: str,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    sample_rate: float,
    steps: int,
    expected_batch_size: int,
    noise_multiplier: float,
    max_grad_norm: float,
    rng: SecureRandom,
) -> tuple[nn.Module, DPOptimizer, DataLoader, object]:
    if engine.secure_mode:
        raise InvalidPrivacyParameter(
            "fedctr draws noise and samples from its own CSPRNG (SecureRandom); "
            "create the PrivacyEngine with secure_mode=False"
        )
    loader = poisson_loader(data_loader, sample_rate=sample_rate, steps=steps, rng=rng)
    extra = {"criterion": nn.BCEWithLogitsLoss(reduction="mean")} if mode == "ghost" else {}
    made = engine.make_private(
        module=module,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=False,
        grad_sample_mode=mode,
        **extra,
    )
    if mode == "ghost":
        private_module, private_optimizer, criterion, private_loader = made
    else:
        (private_module, private_optimizer, private_loader), criterion = made, _bce
    _declare(
        engine,
        private_optimizer,
        sample_rate=sample_rate,
        expected_batch_size=expected_batch_size,
        rng=rng,
    )
    return private_module, private_optimizer, private_loader, criterion


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
        sample_rate: float,
        steps: int,
        expected_batch_size: int,
        noise_multiplier: float,
        max_grad_norm: float,
        rng: SecureRandom,
    ) -> PrivateTraining:
        module, optimizer, loader, criterion = _private(
            engine,
            mode="hooks",
            module=module,
            optimizer=optimizer,
            data_loader=data_loader,
            sample_rate=sample_rate,
            steps=steps,
            expected_batch_size=expected_batch_size,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            rng=rng,
        )
        return PrivateTraining(module, optimizer, loader, criterion, self.name)

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
        sample_rate: float,
        steps: int,
        expected_batch_size: int,
        noise_multiplier: float,
        max_grad_norm: float,
        rng: SecureRandom,
    ) -> PrivateTraining:
        module, optimizer, loader, criterion = _private(
            engine,
            mode="ghost",
            module=module,
            optimizer=optimizer,
            data_loader=data_loader,
            sample_rate=sample_rate,
            steps=steps,
            expected_batch_size=expected_batch_size,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            rng=rng,
        )
        return PrivateTraining(module, optimizer, loader, criterion, self.name)

    def unwrap(self, module: nn.Module) -> nn.Module:
        return getattr(module, "_module", module)
