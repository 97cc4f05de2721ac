"""The seam between a partner's training loop and a DP-SGD implementation.

Every implementation gives the same guarantee: per-example clipping to
``max_grad_norm`` over all parameters; Gaussian noise of std
``noise_multiplier * max_grad_norm`` on the summed clipped gradient, the result
divided by the declared ``expected_batch_size`` (never by the count of the batch,
which would reveal it); Poisson sampling at the declared ``sample_rate`` for exactly
``steps`` steps; noise and sampling from one
:class:`~fedctr.privacy.randomness.SecureRandom`. Each implementation steps the Opacus
accountant of the PrivacyEngine it is given, at the declared rate. They differ only
in speed and memory.

Bucket selection (``selection``: DP-AdaFEST, :mod:`fedctr.privacy.dpsgd.bucket_selection`)
adds a second Gaussian release per step, the noisy count of units per embedding row,
and restricts the step's gradient and noise to the rows it selects; the accountant is
stepped with the composed noise multiplier. Only implementations with
``supports_bucket_selection`` accept it.

User-level DP (``user_sampling``, issue 14) changes the sampled and clipped unit:
each step includes every *user* with probability ``sample_rate`` (with at most
``max_rows`` of its rows, chosen once before training), and each user's *summed*
gradient is clipped to ``max_grad_norm``; noise, scaling and accounting are as
above with the user as the unit. Only implementations with
``supports_user_level`` accept it; the others refuse it before anything is wrapped.

Every privacy argument is declared by the partner's config and none may depend on
the number of rows: that is what makes the epsilon, the steps and the averaging
constant of a release public without revealing the partner's size.

The training loop is the same for all (the loader yields ``steps`` batches, some
possibly empty)::

    for *inputs, y in private.data_loader:
        private.optimizer.zero_grad()
        loss = private.criterion(private.module(*inputs), y)
        loss.backward()
        private.optimizer.step()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError
from torch import nn
from torch.utils.data import DataLoader

from fedctr.privacy.budget import BucketSelection
from fedctr.privacy.dpsgd.errors import SeamArgumentError, UnsupportedLayerError
from fedctr.privacy.dpsgd.sampling import check_schedule
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.randomness import SecureRandom
from fedctr.validate import Checker

_CHECK = Checker(InvalidPrivacyParameter)

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class UserSampling:
    """User-level DP-SGD: ``users`` gives each row's user (an integer id, local to the
    partner: salted hashes of its user-key columns) and ``max_rows`` is the declared
    bound on one user's rows in this round (the rest sit it out)."""

    users: torch.Tensor  # int64 [rows]
    max_rows: int


@dataclass(frozen=True)
class PrivateTraining:
    """What a DP-SGD implementation hands back to the training loop."""

    module: nn.Module
    optimizer: torch.optim.Optimizer
    data_loader: Iterable[tuple[torch.Tensor, ...]]
    criterion: Criterion
    implementation: str


class DPSGDImplementation(ABC):
    """One way of running DP-SGD under an Opacus PrivacyEngine."""

    name: str
    #: Whether ``make_private`` accepts ``user_sampling`` (per-user clipping).
    supports_user_level: ClassVar[bool] = False
    #: Whether ``make_private`` accepts ``selection`` (DP selection of embedding rows).
    supports_bucket_selection: ClassVar[bool] = False

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
        user_sampling: UserSampling | None = None,
        selection: BucketSelection | None = None,
    ) -> PrivateTraining:
        """Wrap model, optimizer and data; the criterion is binary cross-entropy on logits
        with mean reduction.

        ``data_loader`` is a plain loader over a ``TensorDataset``: only its dataset is
        used, re-batched by :class:`~fedctr.privacy.dpsgd.sampling.PoissonLoader` at
        ``sample_rate`` for ``steps`` steps. ``rng`` draws both the batches and the
        noise. Implementations call :func:`check_private_arguments` first, so nothing
        is wrapped (and no budget spent) on arguments that would void the guarantee.
        """

    @abstractmethod
    def unwrap(self, module: nn.Module) -> nn.Module:
        """The original model inside a wrapped module (for ``state_dict``)."""


def check_private_arguments(
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
    implementation: DPSGDImplementation | None = None,
    selection: BucketSelection | None = None,
) -> None:
    """Refuse, before anything is wrapped, what every implementation must refuse."""
    if selection is not None and (
        implementation is None or not implementation.supports_bucket_selection
    ):
        name = getattr(implementation, "name", "this implementation")
        raise SeamArgumentError(
            f"{name} noises every embedding row; bucket selection needs an implementation "
            "with supports_bucket_selection (fedctr-sparse)"
        )
    if user_sampling is not None:
        if implementation is None or not implementation.supports_user_level:
            name = getattr(implementation, "name", "this implementation")
            raise SeamArgumentError(
                f"{name} clips per row; user-level DP needs an implementation with "
                "supports_user_level (fedctr-sparse)"
            )
        _CHECK.integer(user_sampling.max_rows, "max_rows", minimum=1)
        rows = len(data_loader.dataset)  # type: ignore[arg-type]
        users = user_sampling.users
        if users.dim() != 1 or len(users) != rows or users.dtype != torch.int64:
            raise SeamArgumentError(f"user_sampling.users must be int64, one id per row ({rows})")
    _CHECK.positive(max_grad_norm, "max_grad_norm")
    _CHECK.non_negative(noise_multiplier, "noise_multiplier")
    check_schedule(sample_rate=sample_rate, steps=steps)
    _CHECK.integer(expected_batch_size, "expected_batch_size", minimum=1)
    if not isinstance(rng, SecureRandom):
        raise SeamArgumentError(
            "noise and sampling draw from a fedctr.privacy.randomness.SecureRandom, "
            f"got {type(rng).__name__}"
        )
    if engine.secure_mode:
        raise InvalidPrivacyParameter(
            "fedctr draws noise and samples from its own CSPRNG (SecureRandom); "
            "create the PrivacyEngine with secure_mode=False"
        )
    if isinstance(optimizer, DPOptimizer):
        raise SeamArgumentError("pass the plain torch optimizer, not one already made private")
    if isinstance(data_loader, DPDataLoader):
        raise SeamArgumentError("pass the plain DataLoader; Poisson sampling is added here")
    try:
        ModuleValidator.validate(module, strict=True)
    except UnsupportedModuleError as exc:
        raise UnsupportedLayerError(f"Opacus rejects this model for DP-SGD: {exc}") from exc
    owned = {id(p) for p in module.parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in owned:
                raise UnsupportedLayerError("the optimizer holds tensors that are not the model's")
    for name, p in module.named_parameters():
        if p.requires_grad and (p.dtype != torch.float32 or p.device.type != "cpu"):
            raise UnsupportedLayerError(
                f"parameter '{name}' is {p.dtype} on {p.device}: DP-SGD noise is drawn for "
                "float32 CPU tensors (fedctr.privacy.randomness explains why float32)"
            )


__all__ = [
    "Criterion",
    "DPSGDImplementation",
    "PrivateTraining",
    "UserSampling",
    "check_private_arguments",
]
