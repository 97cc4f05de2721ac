"""The reference every federated DP result is compared with: the same model, trained
centrally and without privacy on all partners' rows pooled.

Only a comparison tool for the demo and benchmarks; a real platform never holds
these rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from fedctr.clients.config import TrainingSettings
from fedctr.clients.trainer import train_locally
from fedctr.models import CTRModel, FeatureSpec, ModelConfig, build_model
from fedctr.models.logs.reader import BadRowPolicy, EncodedData, read_partner_log
from fedctr.server.platform.evaluation import GlobalMetrics, evaluate_global


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


def centralized_baseline(
    *,
    spec: FeatureSpec,
    model: ModelConfig,
    train_files: Iterable[Path],
    eval_file: Path,
    epochs: int,
    training: TrainingSettings,
    seed: int = 0,
) -> GlobalMetrics:
    """Train non-privately on the pooled partner files; evaluate on ``eval_file``."""
    data = pool(read_partner_log(f, spec, policy=BadRowPolicy.SKIP) for f in train_files)
    net = train_centrally(spec, model, data, training=training, epochs=epochs, seed=seed)
    return evaluate_global(net, read_partner_log(eval_file, spec, policy=BadRowPolicy.SKIP))


__all__ = ["centralized_baseline", "pool", "train_centrally"]
