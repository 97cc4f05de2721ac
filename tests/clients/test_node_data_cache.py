"""A node training from its on-disk encoded cache trains exactly as one reading its log
whole: the same rows, the same Poisson batches and noise for one seed, the same update."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.clients.errors import PartnerConfigError
from fedctr.clients.node import ENCODED_CACHE_DIR, PartnerNode
from fedctr.models import FeatureSpec, build_model, builtin_spec_path, model_config
from fedctr.privacy.signing import generate_signing_key, save_private_key

MODEL = model_config("deepfm")


def _config(root: Path, log: Path, cache: str) -> PartnerConfig:
    root.mkdir(parents=True)
    key = save_private_key(generate_signing_key(), root / "partner.key")
    return PartnerConfig(
        partner_id="shop-a",
        data=log,
        spec=builtin_spec_path("demo"),
        state_dir=root / "state",
        signing_key=key,
        ledger=root / "ledger.jsonl",
        data_cache=cache,
        privacy=PrivacySettings(epsilon=4.0, delta=1e-5, planned_rounds=2, sample_rate=0.1),
        training=TrainingSettings(batch_size=64, learning_rate=0.05),
    )


def test_disk_and_memory_nodes_release_the_same_update(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    log = synthetic_logs[0]["shop-a"]
    updates = {}
    for cache in ("memory", "disk"):
        config = _config(tmp_path / cache, log, cache)
        (config.state_dir).mkdir(parents=True)
        (config.state_dir / "holdout-key").write_bytes(bytes(32))  # one split for both
        torch.manual_seed(0)
        weights = build_model(demo_spec, MODEL).state_dict()
        node = PartnerNode(config)
        updates[cache], reply = node.train(
            weights,
            model_config=MODEL,
            spec_hash=demo_spec.spec_hash,
            run_id="run-1",
            server_round=1,
            seed=3,
        )
        assert reply is not None
        assert node.splits()[0].on_disk is (cache == "disk")
    assert (tmp_path / "disk" / "state" / ENCODED_CACHE_DIR).is_dir()
    assert not (tmp_path / "memory" / "state" / ENCODED_CACHE_DIR).exists()
    for name, value in updates["memory"].items():
        assert torch.equal(value, updates["disk"][name]), name


def test_data_cache_must_be_a_known_mode(tmp_path: Path) -> None:
    with pytest.raises(PartnerConfigError, match="data_cache"):
        _config(tmp_path / "node", tmp_path / "log.csv", "ram")
