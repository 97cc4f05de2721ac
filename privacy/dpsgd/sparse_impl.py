"""fedctr's fast DP-SGD: per-example norms without per-example gradients, one backward.

Registered as ``fedctr-sparse``. It gives the guarantee Opacus gives (flat
clipping to ``max_grad_norm`` over all parameters, Gaussian noise of std
``noise_multiplier * max_grad_norm`` from a CSPRNG on the summed clipped gradient
divided by the declared expected batch size, Poisson sampling at the declared rate)
and steps the accountant of the PrivacyEngine it is handed, through the same
optimizer hook.
Where it differs is cost: embedding tables never get a per-example (or even a
dense) gradient; only the noise touches every row. See
:mod:`privacy.dpsgd.sparse_taps` and :mod:`privacy.dpsgd.sparse_optimizer`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError
from torch import nn
from torch.utils.data import DataLoader

from privacy.dpsgd.base import DPSGDImplementation, PrivateTraining
from privacy.dpsgd.errors import UnsupportedLayerError
from privacy.dpsgd.registry import register_implementation
from privacy.dpsgd.sampling import poisson_loader
from privacy.dpsgd.sparse_optimizer import SparseDPOptimizer
from privacy.dpsgd.sparse_taps import LayerTaps
from privacy.errors import InvalidPrivacyParameter
from privacy.randomness import SecureRandom


def bce_with_logits_mean(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training criterion of the seam: binary cross-entropy on logits, mean reduction."""
    return nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="mean")


class SparseDPModule(nn.Module):
    """The model as the training loop sees it: records layer inputs/backprops in training.

    Under ``torch.no_grad()`` (evaluation) it is the plain model. ``state_dict`` keys
    carry a ``_module.`` prefix, as with Opacus' wrappers.
    """

    def __init__(self, module: nn.Module, taps: LayerTaps) -> None:
        super().__init__()
        self._module = module
        self.taps = taps

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return self._module(*args, **kwargs)
        with self.taps.recording():
            return self._module(*args, **kwargs)


@register_implementation("fedctr-sparse")
class FedctrSparse(DPSGDImplementation):
    """Ghost norms for ``nn.Linear``, index-matched norms for ``nn.Embedding``, one backward
    pass, clipping and noise fused into the optimizer step."""

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
        _check_positive_real("max_grad_norm", max_grad_norm, allow_zero=False)
        _check_positive_real("noise_multiplier", noise_multiplier, allow_zero=True)
        _check_positive_real("sample_rate", sample_rate, allow_zero=False)
        if isinstance(expected_batch_size, bool) or not (
            isinstance(expected_batch_size, int) and expected_batch_size > 0
        ):
            raise InvalidPrivacyParameter("expected_batch_size must be a positive integer")
        if engine.secure_mode:
            raise InvalidPrivacyParameter(
                "fedctr draws noise and samples from its own CSPRNG (SecureRandom); "
                "create the PrivacyEngine with secure_mode=False"
            )
        if isinstance(optimizer, DPOptimizer):
            raise TypeError("pass the plain torch optimizer, not one already made private")
        if isinstance(data_loader, DPDataLoader):
            raise TypeError("pass the plain DataLoader; Poisson sampling is added here")
        try:
            ModuleValidator.validate(module, strict=True)
        except UnsupportedModuleError as exc:
            raise UnsupportedLayerError(f"Opacus rejects this model for DP-SGD: {exc}") from exc
        taps = LayerTaps(module)
        try:
            loader = poisson_loader(data_loader, sample_rate=sample_rate, steps=steps, rng=rng)
            private_optimizer = SparseDPOptimizer(
                optimizer,
                taps=taps,
                noise_multiplier=float(noise_multiplier),
                max_grad_norm=float(max_grad_norm),
                expected_batch_size=expected_batch_size,
                rng=rng,
            )
        except BaseException:
            taps.remove()
            raise
        private_optimizer.attach_step_hook(
            engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate)
        )
        return PrivateTraining(
            module=SparseDPModule(module, taps),
            optimizer=private_optimizer,
            data_loader=loader,
            criterion=bce_with_logits_mean,
            implementation=self.name,
        )

    def unwrap(self, module: nn.Module) -> nn.Module:
        return getattr(module, "_module", module)


def _check_positive_real(name: str, value: object, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidPrivacyParameter(f"{name} must be finite and {bound}, got {value!r}")


__all__ = ["FedctrSparse", "SparseDPModule", "bce_with_logits_mean"]
