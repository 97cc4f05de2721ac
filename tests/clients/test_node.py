"""The partner node enforces its own budget with real Opacus, across rounds and restarts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant

from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.clients.errors import PartnerConfigError
from fedctr.clients.node import PartnerNode
from fedctr.models import (
    FeatureSpec,
    SpecMismatchError,
    build_model,
    builtin_spec_path,
    model_config,
)
from fedctr.privacy import BudgetExceededError
from fedctr.privacy.ledger import read_ledger
from fedctr.privacy.signing import generate_signing_key, save_private_key

MODEL = model_config("lr")


def _node(
    tmp_path: Path, log: Path, *, planned_rounds: int = 2, epsilon: float = 3.0, dp: bool = True
) -> PartnerNode:
    tmp_path.mkdir(parents=True, exist_ok=True)
    key = tmp_path / "partner.key"
    if not key.exists():
        save_private_key(generate_signing_key(), key)
    config = PartnerConfig(
        partner_id="shop-a",
        data=log,
        spec=builtin_spec_path("demo"),
        state_dir=tmp_path / "state",
        signing_key=key,
        ledger=tmp_path / "ledger.jsonl",
        privacy=PrivacySettings(
            epsilon=epsilon,
            delta=1e-5,
            planned_rounds=planned_rounds,
            max_grad_norm=1.0,
            dp_implementation="opacus-ghost",
            enabled=dp,
        ),
        training=TrainingSettings(batch_size=128, local_epochs=1, learning_rate=0.05),
    )
    return PartnerNode(config)


def _train(node: PartnerNode, spec: FeatureSpec, rnd: int, seed: int = 0):
    torch.manual_seed(0)
    weights = build_model(spec, MODEL).state_dict()
    return node.train(
        weights,
        model_config=MODEL,
        spec_hash=spec.spec_hash,
        run_id="run-1",
        server_round=rnd,
        seed=seed,
    )


def test_planned_rounds_spend_the_budget_and_the_next_is_refused(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    """Noise is calibrated so the planned rounds end at (not over) the budget; Opacus'
    own accountant on the recorded steps agrees; one more round is refused and
    changes nothing."""
    logs, _ = synthetic_logs
    node = _node(tmp_path, logs["shop-a"])

    _, first = _train(node, demo_spec, 1)
    _, second = _train(_node(tmp_path, logs["shop-a"]), demo_spec, 2)  # a restarted node

    assert first.epsilon < second.epsilon <= 3.0
    assert second.epsilon >= 3.0 - 0.02
    check = RDPAccountant()
    check.history = [
        (r.release.noise_multiplier, r.release.sample_rate, r.release.steps)
        for r in (first, second)
    ]
    assert check.get_epsilon(delta=1e-5) == pytest.approx(second.epsilon, rel=1e-9)

    state_before = (tmp_path / "state" / "privacy-state.json").read_text()
    with pytest.raises(BudgetExceededError, match="planned rounds"):
        _train(_node(tmp_path, logs["shop-a"]), demo_spec, 3)
    assert (tmp_path / "state" / "privacy-state.json").read_text() == state_before


def test_each_release_is_ledgered_before_the_update_leaves(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    _, reply = _train(_node(tmp_path, logs["shop-a"]), demo_spec, 1)

    entries = read_ledger(tmp_path / "ledger.jsonl").entries
    assert len(entries) == 1
    body = entries[0].body
    assert body["update_hash"] == reply.update_hash
    assert body["epsilon_after"] == reply.epsilon
    assert body["mechanism"]["steps"] == reply.release.steps
    assert reply.ledger_entry == entries[0].to_json()


def test_a_budget_too_small_for_one_round_is_refused_before_training(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    """A budget no noise level can meet is refused up front, with advice."""
    logs, _ = synthetic_logs
    node = _node(tmp_path, logs["shop-a"], epsilon=1e-6)

    with pytest.raises(Exception, match="budget"):
        _train(node, demo_spec, 1)
    assert not (tmp_path / "ledger.jsonl").exists()


def test_dp_updates_are_noisy_and_differ_by_seed(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    """Two DP rounds from the same start with different noise seeds differ."""
    logs, _ = synthetic_logs
    a, _ = _train(_node(tmp_path / "a", logs["shop-a"], planned_rounds=5), demo_spec, 1, seed=1)
    b, _ = _train(_node(tmp_path / "b", logs["shop-a"], planned_rounds=5), demo_spec, 1, seed=2)

    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_a_model_for_another_spec_is_refused(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    node = _node(tmp_path, logs["shop-a"])
    weights = build_model(demo_spec, MODEL).state_dict()

    with pytest.raises(SpecMismatchError, match="same spec file"):
        node.train(weights, model_config=MODEL, spec_hash="0" * 64, run_id="r", server_round=1)
    with pytest.raises(SpecMismatchError):
        node.evaluate(weights, model_config=MODEL, spec_hash="0" * 64)


def test_evaluation_reports_auc_on_the_partners_holdout(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    node = _node(tmp_path, logs["shop-a"])
    report = node.evaluate(
        build_model(demo_spec, MODEL).state_dict(),
        model_config=MODEL,
        spec_hash=demo_spec.spec_hash,
    )

    assert 240 <= report.num_examples <= 360  # keyed-hash holdout: 20% of 1500 +- 5 s.d.
    assert 0.0 <= report.auc <= 1.0


def test_what_a_round_reports_does_not_depend_on_the_row_count(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    """Two partners with the same config and different logs (1500 vs 900 rows) report the
    same noise, sampling rate, steps and epsilon: those are public by declaration."""
    logs, _ = synthetic_logs
    _, big = _train(_node(tmp_path / "big", logs["shop-a"]), demo_spec, 1)
    _, small = _train(_node(tmp_path / "small", logs["crm-c"]), demo_spec, 1)

    assert big.release == small.release
    assert big.epsilon == small.epsilon


def test_a_delta_not_below_one_over_n_is_refused_locally(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    node = _node(tmp_path, logs["crm-c"])
    node = PartnerNode(replace(node.config, privacy=replace(node.config.privacy, delta=0.01)))

    with pytest.raises(PartnerConfigError, match="not below 1/n"):
        _train(node, demo_spec, 1)


def test_a_dp_partner_without_a_signing_key_refuses_to_train(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    node = _node(tmp_path, logs["shop-a"])
    node = PartnerNode(replace(node.config, signing_key=None))

    with pytest.raises(PartnerConfigError, match="signing_key"):
        _train(node, demo_spec, 1)
