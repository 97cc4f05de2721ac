"""fedctr's fast DP-SGD: per-example norms without per-example gradients, one backward.

Registered as ``fedctr-sparse``. It gives the guarantee of the seam
(:mod:`fedctr.privacy.dpsgd.base`: flat clipping to ``max_grad_norm`` over all parameters,
Gaussian noise of std ``noise_multiplier * max_grad_norm`` from the CSPRNG on the
summed clipped gradient, divided by the declared expected batch size, Poisson
sampling at the declared rate) and steps the accountant of the PrivacyEngine it is
handed, through Opacus' own optimizer hook, at the declared rate. Where it differs
is cost: embedding tables never get a per-example (or even a dense) gradient; only
the noise touches every row. See :mod:`fedctr.privacy.dpsgd.sparse_taps` and
:mod:`fedctr.privacy.dpsgd.sparse_optimizer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader

from fedctr.privacy.budget import BucketSelection, composed_noise_multiplier
from fedctr.privacy.dpsgd.base import (
    DPSGDImplementation,
    PrivateTraining,
    UserSampling,
    check_private_arguments,
)
from fedctr.privacy.dpsgd.registry import register_implementation
from fedctr.privacy.dpsgd.sampling import UserPoissonLoader, poisson_loader
from fedctr.privacy.dpsgd.sparse_optimizer import SparseDPOptimizer
from fedctr.privacy.dpsgd.sparse_taps import LayerTaps
from fedctr.privacy.dpsgd.user_groups import UserGroups
from fedctr.privacy.randomness import SecureRandom


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


class _UserBatches:
    """User-level batches as the training loop expects them, ``(*inputs, y)``: each
    batch's user ids go to the optimizer (its per-user clipping layout), not the model."""

    def __init__(self, loader: UserPoissonLoader, optimizer: SparseDPOptimizer) -> None:
        self.loader = loader
        self._optimizer = optimizer

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for *batch, users in self.loader:
            self._optimizer.expect_users(UserGroups.of(users, max_rows=self.loader.max_rows))
            yield tuple(batch)


@register_implementation("fedctr-sparse")
class FedctrSparse(DPSGDImplementation):
    """Ghost norms for ``nn.Linear``, index-matched norms for ``nn.Embedding``, one backward
    pass, clipping and noise fused into the optimizer step; per-example or per-user."""

    supports_user_level = True
    supports_bucket_selection = True

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
        taps = LayerTaps(module)
        loader: Any
        try:
            private_optimizer = SparseDPOptimizer(
                optimizer,
                taps=taps,
                noise_multiplier=float(noise_multiplier),
                max_grad_norm=float(max_grad_norm),
                expected_batch_size=expected_batch_size,
                rng=rng,
                user_level=user_sampling is not None,
                selection=selection,
            )
            if user_sampling is None:
                loader = poisson_loader(data_loader, sample_rate=sample_rate, steps=steps, rng=rng)
            else:
                users = UserPoissonLoader(
                    data_loader.dataset,  # type: ignore[arg-type]
                    users=user_sampling.users,
                    sample_rate=sample_rate,
                    steps=steps,
                    max_rows=user_sampling.max_rows,
                    rng=rng,
                )
                loader = _UserBatches(users, private_optimizer)
        except BaseException:
            taps.remove()
            raise
        if selection is None:
            private_optimizer.attach_step_hook(
                engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate)
            )
        else:  # the gradient's and the counts' Gaussians: one composed mechanism per step
            accounted = composed_noise_multiplier(noise_multiplier, selection.noise_multiplier)

            def step_hook(_optimizer: SparseDPOptimizer) -> None:
                engine.accountant.step(noise_multiplier=accounted, sample_rate=sample_rate)

            private_optimizer.attach_step_hook(step_hook)
        return PrivateTraining(
            module=SparseDPModule(module, taps),
            optimizer=private_optimizer,
            data_loader=loader,
            criterion=bce_with_logits_mean,
            implementation=self.name,
        )

    def unwrap(self, module: nn.Module) -> nn.Module:
        return getattr(module, "_module", module)


__all__ = ["FedctrSparse", "SparseDPModule", "bce_with_logits_mean"]
