"""Opacus' own DP-SGD modes: per-sample-gradient hooks and ghost clipping.

Opacus computes the per-example norms and clips. Everything privacy-relevant around
that follows the seam's declared values instead of what ``PrivacyEngine.make_private``
would derive (rate ``1 / len(loader)``, batch ``rows * rate``, noise from torch's
Mersenne Twister), so the pieces are assembled here rather than through it:

- the model is wrapped by Opacus' own module class for the mode, as ``make_private``
  would, with gradient accumulation forbidden (one Poisson batch per step); in ghost
  mode an empty batch is handled here (Opacus' ghost norms crash on zero rows);
- the batches come from :class:`~fedctr.privacy.dpsgd.sampling.PoissonLoader`;
- the optimizer is Opacus' own class for the mode with ``add_noise`` drawing from
  :class:`~fedctr.privacy.randomness.SecureRandom`, built with the declared
  ``expected_batch_size`` (its ``scale_grad`` divides by it) and the accountant hook
  attached at the declared rate.

Both run soundly on these terms; they stay for comparison (``bench/bench_dpsgd.py``)
and for models fedctr-sparse refuses (a bare ``nn.Parameter``: opacus-ghost).
"""

from __future__ import annotations

from typing import Any

import torch
from opacus import PrivacyEngine
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.grad_sample.utils import prepare_module
from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch import nn
from torch.utils.data import DataLoader

from fedctr.privacy.budget import BucketSelection
from fedctr.privacy.dpsgd.base import (
    Criterion,
    DPSGDImplementation,
    PrivateTraining,
    UserSampling,
    check_private_arguments,
)
from fedctr.privacy.dpsgd.registry import register_implementation
from fedctr.privacy.dpsgd.sampling import poisson_loader
from fedctr.privacy.randomness import SecureRandom


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="mean")


class _SecureNoise:
    """``DPOptimizer.add_noise`` with the noise drawn from a :class:`SecureRandom`."""

    _rng: SecureRandom
    params: list[nn.Parameter]
    noise_multiplier: float
    max_grad_norm: float

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            noise = self._rng.gaussian_(torch.empty(p.summed_grad.shape), std=std)
            p.grad = (p.summed_grad + noise).view_as(p)
            _mark_as_processed(p.summed_grad)


class SecureDPOptimizer(_SecureNoise, DPOptimizer):
    """Opacus' flat-clipping optimizer (hooks mode), noise from the CSPRNG."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        rng: SecureRandom,
    ) -> None:
        super().__init__(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction="mean",
            generator=None,
            secure_mode=False,
        )
        self._rng = rng


class SecureDPOptimizerFastGradientClipping(_SecureNoise, DPOptimizerFastGradientClipping):
    """Opacus' ghost-clipping optimizer, noise from the CSPRNG."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        rng: SecureRandom,
    ) -> None:
        super().__init__(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction="mean",
            generator=None,
            secure_mode=False,
        )
        self._rng = rng


class _GhostModule(GradSampleModuleFastGradientClipping):
    """Opacus' ghost-clipping wrapper, with a forward for the empty Poisson batch.

    Opacus' norm samplers cannot reshape a batch of zero rows (the embedding one
    raises), so a batch with no row runs the model with the hooks off; its loss
    (:class:`_EmptyBatchLoss`) then leaves a zero clipped sum, and the step adds pure
    noise and is accounted like any other, as the mechanism requires.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not _is_empty(args):
            return super().forward(*args, **kwargs)
        self.disable_hooks()
        try:
            return super().forward(*args, **kwargs)
        finally:
            self.enable_hooks()


class _EmptyBatchLoss:
    """The loss of a batch with no row: ``backward`` sets every gradient to zero (the
    clipped sum of no example); the optimizer step then noises and accounts it."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self._params = params

    def backward(self) -> None:
        for p in self._params:
            p.grad = torch.zeros_like(p)

    def detach(self) -> torch.Tensor:
        return torch.tensor(float("nan"))

    def item(self) -> float:
        return float("nan")


class _GhostLoss(DPLossFastGradientClipping):
    """Opacus' two-pass ghost-clipping loss; an empty batch gets :class:`_EmptyBatchLoss`."""

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> Any:
        if target.shape[0] == 0:
            return _EmptyBatchLoss(self.optimizer.params)
        return super().__call__(logits, target)


def _is_empty(args: tuple[Any, ...]) -> bool:
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return first is not None and first.dim() > 0 and first.shape[0] == 0


def _wrap(
    engine: PrivacyEngine,
    *,
    mode: str,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    sample_rate: float,
    expected_batch_size: int,
    noise_multiplier: float,
    max_grad_norm: float,
    rng: SecureRandom,
) -> tuple[nn.Module, DPOptimizer, Criterion]:
    """The wrapped model, optimizer and criterion of Opacus' ``mode`` on declared terms."""
    terms = {
        "noise_multiplier": float(noise_multiplier),
        "max_grad_norm": float(max_grad_norm),
        "expected_batch_size": expected_batch_size,
        "rng": rng,
    }
    private_optimizer: DPOptimizer
    criterion: Criterion
    if mode == "ghost":
        wrapped = _GhostModule(
            module,
            batch_first=True,
            loss_reduction="mean",
            max_grad_norm=float(max_grad_norm),
            use_ghost_clipping=True,
        )
        private_optimizer = SecureDPOptimizerFastGradientClipping(optimizer, **terms)
        criterion = _GhostLoss(
            wrapped, private_optimizer, nn.BCEWithLogitsLoss(reduction="mean"), "mean"
        )
    else:
        wrapped = prepare_module(
            module, grad_sample_mode="hooks", batch_first=True, loss_reduction="mean"
        )
        private_optimizer = SecureDPOptimizer(optimizer, **terms)
        criterion = _bce
    wrapped.forbid_grad_accumulation()
    private_optimizer.attach_step_hook(
        engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate)
    )
    return wrapped, private_optimizer, criterion


class _OpacusMode(DPSGDImplementation):
    mode: str

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
        user_sampling: UserSampling | None = None,
        selection: BucketSelection | None = None,
    ) -> PrivateTraining:
        check_private_arguments(
            engine,
            module=module,
            optimizer=optimizer,
            data_loader=data_loader,
            sample_rate=sample_rate,
            steps=steps,
            expected_batch_size=expected_batch_size,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            rng=rng,
            user_sampling=user_sampling,
            implementation=self,
            selection=selection,
        )
        loader = poisson_loader(data_loader, sample_rate=sample_rate, steps=steps, rng=rng)
        wrapped, private_optimizer, criterion = _wrap(
            engine,
            mode=self.mode,
            module=module,
            optimizer=optimizer,
            sample_rate=sample_rate,
            expected_batch_size=expected_batch_size,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            rng=rng,
        )
        return PrivateTraining(wrapped, private_optimizer, loader, criterion, self.name)

    def unwrap(self, module: nn.Module) -> nn.Module:
        return getattr(module, "_module", module)


@register_implementation("opacus-hooks")
class OpacusHooks(_OpacusMode):
    """Materialises every per-sample gradient: exact and simple, slow for big tables."""

    mode = "hooks"


@register_implementation("opacus-ghost")
class OpacusGhost(_OpacusMode):
    """Opacus ghost clipping: norms without per-sample gradients, two backward passes."""

    mode = "ghost"
