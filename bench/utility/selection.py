"""Honest hyper-parameter selection: every arm of the table tuned the same way.

A baseline left at one learning rate and a fixed number of epochs can overfit, and
then DP appears to beat non-private training (issue 15). So every arm (centralized,
federated non-private, federated DP) gets the same procedure:

- a validation split carved from the *training* rows by a public keyed hash
  (``VALIDATION_FRACTION``); partners are split from the remaining rows, and the test
  rows are read only to score the chosen model;
- learning rates ``recipe lr x LR_FACTORS`` (Adam), each trained once;
- early stopping: the model after each epoch (centralized) or round (federated) is
  scored on the validation rows, and the best (learning rate, stop) wins.

What this costs in privacy is not accounted: the validation rows are partner rows and
the choice depends on them (as in most DP benchmarks; Papernot & Steinke 2022 bound
it). A DP model stopped at round r < R has spent the epsilon of r rounds, less than
the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.utility.datasets import HOLDOUT_SEED, split_by_user
from fedctr.clients.holdout import seed_key
from fedctr.models.logs.reader import EncodedData
from fedctr.server.platform.evaluation import evaluate_global

VALIDATION_FRACTION = 0.15
LR_FACTORS = (0.03, 0.1, 0.3, 1.0, 3.0)
_VALIDATION_KEY = seed_key(HOLDOUT_SEED + 3)
VALIDATION_SEED = HOLDOUT_SEED + 3


def validation_split(train: EncodedData) -> tuple[EncodedData, EncodedData]:
    """(rows to train on, validation rows): the same split for every arm and seed; by
    user when the rows carry users (no person on both sides), else by a seeded draw per
    row *position*. Not by row content (EncodedData.split): on a low-cardinality log
    identical feature rows differ only in their label, and a content hash sends each
    (x, y) to one side, so validation would hold the other label of what training saw
    (validation AUC < 0.5 on Criteo attribution)."""
    if train.users is not None:
        return split_by_user(train, VALIDATION_FRACTION, key=_VALIDATION_KEY)
    held = np.random.default_rng(VALIDATION_SEED).random(len(train)) < VALIDATION_FRACTION
    return train.take(np.flatnonzero(~held)), train.take(np.flatnonzero(held))


def learning_rates(base: float, factors: Sequence[float] = LR_FACTORS) -> list[float]:
    return sorted({base * f for f in factors})


@dataclass(frozen=True)
class Choice:
    """The chosen learning rate, the epoch or round it stopped at, its validation AUC."""

    learning_rate: float
    stop: int
    validation_auc: float


class BestOnValidation:
    """Scores each offered model on the validation rows and keeps the best one's state."""

    def __init__(self, valid: EncodedData) -> None:
        self.valid = valid
        self.choice: Choice | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, model: nn.Module, *, learning_rate: float, stop: int) -> float:
        auc = evaluate_global(model, self.valid).auc
        if self.choice is None or auc > self.choice.validation_auc:
            self.choice = Choice(learning_rate, stop, auc)
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return auc

    def on_round(
        self, model: nn.Module, learning_rate: float
    ) -> Callable[[int, dict[str, torch.Tensor]], None]:
        """A federated run's per-round hook: load the round's global state into
        ``model`` and offer it."""

        def offer_round(server_round: int, state: dict[str, torch.Tensor]) -> None:
            model.load_state_dict(state, strict=True)
            self.offer(model, learning_rate=learning_rate, stop=server_round)

        return offer_round

    def best(self, model: nn.Module) -> Choice:
        """Load the best state into ``model``; the choice that made it."""
        if self.choice is None or self.state is None:
            raise RuntimeError("nothing was offered for selection")
        model.load_state_dict(self.state, strict=True)
        return self.choice


__all__ = [
    "LR_FACTORS",
    "VALIDATION_FRACTION",
    "BestOnValidation",
    "Choice",
    "learning_rates",
    "validation_split",
]
