"""The reference every federated DP result is compared with: the same model, trained
centrally and without privacy on all partners' rows pooled.

An honest reference is *tuned*: a baseline left at one learning rate and a fixed
number of epochs can overfit, and then DP appears to beat non-private training (issue
15 measured exactly that: central 0.762 at lr 1e-2 after 4 epochs vs 0.833 tuned).
:func:`select_centralized` therefore picks the learning rate and the number of epochs
(early stopping) on a validation split carved from the *training* rows by a keyed
hash, and the test file is read once, after the choice, to score the chosen model.

Only a comparison tool for the demo and benchmarks; a real platform never holds
these rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedctr.clients.config import TrainingSettings
from fedctr.clients.trainer import train_locally
from fedctr.models import CTRModel, FeatureSpec, ModelConfig, build_model
from fedctr.models.logs.reader import BadRowPolicy, EncodedData, read_partner_log
from fedctr.server.platform.evaluation import GlobalMetrics, evaluate_global

logger = logging.getLogger(__name__)

#: Learning rates the baseline tries (Adam); the federated runs' own is added to them.
LEARNING_RATES = (1e-3, 3e-3, 1e-2)
#: Share of the pooled training rows held out to choose learning rate and epochs.
VALIDATION_FRACTION = 0.2


def pool(parts: Iterable[EncodedData]) -> EncodedData:
    parts = list(parts)
    return EncodedData(
        np.concatenate([p.x_cat for p in parts]),
        np.concatenate([p.x_num for p in parts]),
        np.concatenate([p.x_dense for p in parts]),
        np.concatenate([p.y for p in parts]),
    )


def train_centrally(
    spec: FeatureSpec,
    model: ModelConfig,
    data: EncodedData,
    *,
    training: TrainingSettings,
    epochs: int,
    seed: int = 0,
    dp_implementation: str = "opacus-ghost",
) -> CTRModel:
    """A fresh model trained without privacy on ``data`` (seeded: same rows, same model).

    ``training`` gives batch size, learning rate and optimizer; there is no holdout.
    """
    torch.manual_seed(seed)
    net = build_model(spec, model)
    settings = TrainingSettings(
        batch_size=training.batch_size,
        local_epochs=epochs,
        learning_rate=training.learning_rate,
        optimizer=training.optimizer,
        holdout_fraction=0.0,
        seed=seed,
    )
    train_locally(
        net,
        data,
        training=settings,
        release=None,
        accountant="rdp",
        dp_implementation=dp_implementation,
        rng=None,  # non-private: no noise, no Poisson sampling
        generator=torch.Generator().manual_seed(seed),
    )
    return net


@dataclass(frozen=True)
class BaselineChoice:
    """The learning rate and epoch count the validation split chose, and its AUC."""

    learning_rate: float
    epochs: int
    validation_auc: float
    tried: tuple[tuple[float, int, float], ...]  # (learning rate, epochs, validation AUC)


@dataclass(frozen=True)
class CentralizedBaseline:
    """The tuned reference: what was chosen, and the chosen model on the test file."""

    choice: BaselineChoice
    test: GlobalMetrics


def select_centralized(
    spec: FeatureSpec,
    model: ModelConfig,
    train: EncodedData,
    *,
    training: TrainingSettings,
    max_epochs: int,
    learning_rates: Sequence[float] = LEARNING_RATES,
    seed: int = 0,
) -> tuple[BaselineChoice, CTRModel]:
    """Choose learning rate and epochs (early stopping) on a validation split of
    ``train``; return the choice and its model (trained on the other rows).

    Takes training rows only, so it cannot read a test row.
    """
    # by position, not by content: see bench.utility.selection.validation_split
    held = np.random.default_rng(seed).random(len(train)) < VALIDATION_FRACTION
    fit, valid = train.take(np.flatnonzero(~held)), train.take(np.flatnonzero(held))
    if len(fit) == 0 or len(valid) == 0 or len(np.unique(valid.y)) < 2:
        raise ValueError("too few training rows to carve a validation split with both labels")
    rates = sorted({*learning_rates, training.learning_rate})
    tried: list[tuple[float, int, float]] = []
    best: tuple[float, int, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    for lr in rates:
        torch.manual_seed(seed)
        net = build_model(spec, model)

        def offer(epoch: int, net: CTRModel = net, lr: float = lr) -> None:
            nonlocal best, best_state
            auc = evaluate_global(net, valid).auc
            tried.append((lr, epoch, auc))
            if best is None or auc > best[2]:
                best = (lr, epoch, auc)
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}

        train_epochs(
            net,
            fit,
            learning_rate=lr,
            optimizer=training.optimizer,
            batch_size=training.batch_size,
            epochs=max_epochs,
            seed=seed,
            after_epoch=offer,
        )
    assert best is not None and best_state is not None
    chosen = build_model(spec, model)
    chosen.load_state_dict(best_state)
    choice = BaselineChoice(best[0], best[1], best[2], tuple(tried))
    logger.info(
        "centralized baseline: lr %g, %d epoch(s) chosen on validation (AUC %.4f)",
        choice.learning_rate,
        choice.epochs,
        choice.validation_auc,
    )
    return choice, chosen


def train_epochs(
    net: CTRModel,
    data: EncodedData,
    *,
    learning_rate: float,
    optimizer: str,
    batch_size: int,
    epochs: int,
    seed: int,
    after_epoch: Callable[[int], None] | None = None,
    adam_eps: float = 1e-8,
) -> None:
    """Non-private shuffled mini-batch training, one optimizer (Adam's moments carry over
    epochs); ``after_epoch(epoch)`` sees the model after each (early stopping).
    ``adam_eps``: Adam's epsilon (1e-3 matches Flower's FedAdam tau, for a central
    baseline of a server-Adam recipe)."""
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(net.parameters(), lr=learning_rate)
        if optimizer == "sgd"
        else torch.optim.Adam(net.parameters(), lr=learning_rate, eps=adam_eps)
    )
    generator = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(1, epochs + 1):
        net.train()
        for *inputs, y in data.loader(batch_size=batch_size, shuffle=True, generator=generator):
            opt.zero_grad()
            loss_fn(net(*inputs), y).backward()
            opt.step()
        if after_epoch is not None:
            after_epoch(epoch)


def centralized_baseline(
    *,
    spec: FeatureSpec,
    model: ModelConfig,
    train_files: Iterable[Path],
    eval_file: Path,
    max_epochs: int,
    training: TrainingSettings,
    seed: int = 0,
) -> CentralizedBaseline:
    """The tuned non-private reference on the pooled partner files: learning rate and
    epochs chosen on a validation split of the training rows, then ``eval_file`` read
    once to score the chosen model."""
    data = pool(read_partner_log(f, spec, policy=BadRowPolicy.SKIP) for f in train_files)
    choice, net = select_centralized(
        spec, model, data, training=training, max_epochs=max_epochs, seed=seed
    )
    test = evaluate_global(net, read_partner_log(eval_file, spec, policy=BadRowPolicy.SKIP))
    return CentralizedBaseline(choice, test)


__all__ = [
    "LEARNING_RATES",
    "BaselineChoice",
    "CentralizedBaseline",
    "centralized_baseline",
    "pool",
    "select_centralized",
    "train_centrally",
    "train_epochs",
]
