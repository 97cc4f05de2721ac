"""Untrained models and plausible card fields, for tests, demos and benchmarks.

Nothing here trains: weights are random, provenance is made up and labelled so
(``run_id="example"``). Never publish these to a registry that serves real traffic.
"""

from __future__ import annotations

import torch

from fedctr.models.base import CTRModel, build_model
from fedctr.models.config import ModelConfig
from fedctr.models.spec import FeatureSpec
from fedctr.privacy.card import (
    ContextFallback,
    ModelCardFields,
    PartnerProvenance,
    ServingGuard,
)


def example_card(
    *,
    base_rate: float = 0.1,
    band: tuple[float, float] = (0.02, 0.4),
    partners: int = 3,
    run_id: str = "example",
) -> ModelCardFields:
    """Card fields as a 3-partner, 3-round run would fill them."""
    return ModelCardFields(
        run_id=run_id,
        rounds=3,
        partners=tuple(
            PartnerProvenance(
                partner_id=f"partner-{i}",
                epsilon=8.0 - i,
                delta=1e-5,
                accountant="rdp",
                unit_of_privacy="example",
                dp_implementation="opacus-ghost",
                rounds_contributed=3,
            )
            for i in range(partners)
        ),
        metrics={"platform_holdout": {"auc": 0.71, "logloss": 0.42}},
        training={"strategy": "fedavg", "rounds_planned": 3},
        serving=ServingGuard(
            base_rate=base_rate, mean_prediction_low=band[0], mean_prediction_high=band[1]
        ),
        fallback=ContextFallback(),
    )


def random_model(
    spec: FeatureSpec, name: str = "deepfm", seed: int = 0, *, hidden: tuple[int, ...] = (16, 8)
) -> CTRModel:
    """A model in eval mode with random, non-zero weights (``N(0, 0.1)``)."""
    generator = torch.Generator().manual_seed(seed)
    # The v1 form: ``hidden`` where the model takes it.
    model = build_model(spec, ModelConfig.from_dict({"name": name, "hidden": hidden}))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval()


__all__ = ["example_card", "random_model"]
