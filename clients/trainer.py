"""Local training of one round, private (DP-SGD via fedctr.privacy.dpsgd) or not."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader

from fedctr.clients.config import TrainingSettings
from fedctr.models.logs.reader import EncodedData
from fedctr.privacy import AccountantKind, DPSGDRound
from fedctr.privacy.dpsgd import UserSampling, get_implementation
from fedctr.privacy.randomness import SecureRandom
from fedctr.privacy.unit import UnitOfPrivacy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalTrainingResult:
    """What a round of local training did (the model is updated in place)."""

    num_examples: int
    mean_loss: float
    steps: int
    dp_implementation: str | None
    engine: PrivacyEngine | None  # its accountant saw every private step


def _optimizer(model: nn.Module, training: TrainingSettings) -> torch.optim.Optimizer:
    if training.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=training.learning_rate)
    return torch.optim.Adam(model.parameters(), lr=training.learning_rate)


def _proximal_step(model: nn.Module, anchor: list[torch.Tensor], mu: float, lr: float) -> None:
    """FedProx pull towards the global model, applied after each optimizer step.

    It depends on no example, so under DP it is post-processing and costs no budget.
    """
    with torch.no_grad():
        for p, a in zip(model.parameters(), anchor, strict=True):
            p.sub_(lr * mu * (p - a))


def train_locally(
    model: nn.Module,
    data: EncodedData,
    *,
    training: TrainingSettings,
    release: DPSGDRound | None,
    accountant: AccountantKind,
    dp_implementation: str,
    rng: SecureRandom | None,
    generator: torch.Generator,
    proximal_mu: float = 0.0,
    unit: UnitOfPrivacy | None = None,
) -> LocalTrainingResult:
    """Train ``model`` in place for one round.

    With ``release`` set, training is DP-SGD with exactly that noise multiplier,
    clipping norm, Poisson sample rate and step count (``release.steps``), the noised
    sum divided by the declared ``training.batch_size``, under a fresh Opacus
    PrivacyEngine whose accountant records the steps; noise and sampling come from
    ``rng`` (a fresh :class:`~fedctr.privacy.randomness.SecureRandom` if ``None``). Without
    it, ``training.local_epochs`` epochs of ordinary shuffled mini-batches drawn with
    ``generator``. ``unit`` (default: one example) set to a user makes the release
    user-level: ``release.sample_rate`` samples users (``data.users``), at most
    ``unit.max_rows`` rows each, and each user's summed gradient is clipped.
    """
    loader = data.loader(
        batch_size=training.batch_size, shuffle=release is None, generator=generator
    )
    distributed = release is not None and release.distributed is not None
    anchor = (
        [p.detach().clone() for p in model.parameters()]
        if proximal_mu > 0 and not distributed
        else []
    )
    model.train()
    # A distributed release is one step whose noise is added later, as a Skellam share
    # on the quantized update (fedctr.privacy.secagg.release): here the step is clipped
    # and summed without noise, and plain SGD makes the update exactly
    # -lr * (sum of clipped gradients) / batch_size.
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=training.learning_rate)
        if distributed
        else _optimizer(model, training)
    )
    if release is None:
        return _train_plain(model, loader, optimizer, training, anchor, proximal_mu)

    with warnings.catch_warnings():
        # Opacus warns that its secure mode is off: fedctr replaces it (SecureRandom below).
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=accountant)
    impl = get_implementation(dp_implementation)
    user_sampling = None
    if unit is not None and unit.is_user:
        if data.users is None:
            raise ValueError("user-level DP-SGD needs each row's user (the spec's user_key)")
        user_sampling = UserSampling(torch.from_numpy(data.users), max_rows=unit.max_rows)
    private = impl.make_private(
        engine,
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        sample_rate=release.sample_rate,
        steps=release.steps,
        expected_batch_size=training.batch_size,
        noise_multiplier=0.0 if distributed else release.noise_multiplier,
        max_grad_norm=release.max_grad_norm,
        rng=rng if rng is not None else SecureRandom.fresh(),
        user_sampling=user_sampling,
        selection=release.selection,
    )
    total, count, steps = 0.0, 0, 0
    for *inputs, y in private.data_loader:  # exactly release.steps Poisson batches
        private.optimizer.zero_grad()
        loss = private.criterion(private.module(*inputs), y)
        loss.backward()
        private.optimizer.step()
        if anchor:
            _proximal_step(impl.unwrap(private.module), anchor, proximal_mu, training.learning_rate)
        steps += 1
        if len(y):
            total += float(loss.detach()) * len(y)
            count += len(y)
    return LocalTrainingResult(len(data), total / max(count, 1), steps, impl.name, engine)


def _train_plain(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    training: TrainingSettings,
    anchor: list[torch.Tensor],
    proximal_mu: float,
) -> LocalTrainingResult:
    loss_fn = nn.BCEWithLogitsLoss()
    total, count, steps = 0.0, 0, 0
    for _ in range(training.local_epochs):
        for *inputs, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(*inputs), y)
            loss.backward()
            optimizer.step()
            if anchor:
                _proximal_step(model, anchor, proximal_mu, training.learning_rate)
            steps += 1
            total += float(loss.detach()) * len(y)
            count += len(y)
    return LocalTrainingResult(len(loader.dataset), total / max(count, 1), steps, None, None)


__all__ = ["LocalTrainingResult", "train_locally"]
