"""A partner's spend can neither be shared by two messages nor reset by losing a file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.clients.node import PartnerNode
from fedctr.clients.state import STATE_FILE, PartnerStateError, load_state
from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
from fedctr.privacy import BudgetExceededError
from fedctr.privacy.ledger import read_ledger
from fedctr.privacy.signing import generate_signing_key, save_private_key

MODEL = model_config("lr")


@pytest.fixture
def node_factory(tmp_path: Path, synthetic_logs):
    logs, _ = synthetic_logs
    key = save_private_key(generate_signing_key(), tmp_path / "partner.key")

    def make(planned_rounds: int) -> PartnerNode:
        return PartnerNode(
            PartnerConfig(
                partner_id="shop-a",
                data=logs["shop-a"],
                spec=builtin_spec_path("demo"),
                state_dir=tmp_path / "state",
                signing_key=key,
                ledger=tmp_path / "ledger.jsonl",
                privacy=PrivacySettings(
                    epsilon=3.0, planned_rounds=planned_rounds, sample_rate=0.2
                ),
                training=TrainingSettings(batch_size=240, learning_rate=0.05),
            )
        )

    return make


def _train(node: PartnerNode, rnd: int):
    spec = load_spec(builtin_spec_path("demo"))
    torch.manual_seed(0)
    return node.train(
        build_model(spec, MODEL).state_dict(),
        model_config=MODEL,
        spec_hash=spec.spec_hash,
        run_id="run-1",
        server_round=rnd,
    )


@pytest.mark.slow
def test_two_concurrent_training_messages_never_share_one_spend(node_factory) -> None:
    """(f) With a budget for one round, of two simultaneous messages exactly one trains."""
    outcomes: list[str] = []

    def one(rnd: int) -> None:
        try:
            _train(node_factory(planned_rounds=1), rnd)
            outcomes.append("trained")
        except BudgetExceededError:
            outcomes.append("refused")

    threads = [threading.Thread(target=one, args=(rnd,)) for rnd in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(outcomes) == ["refused", "trained"]
    node = node_factory(planned_rounds=1)
    assert len(read_ledger(node.config.ledger).entries) == 1
    assert len(load_state(node.config.state_dir, kind="rdp").rounds) == 1


@pytest.mark.slow
def test_deleting_the_state_file_does_not_reset_spend(node_factory) -> None:
    """(g) The spend is rebuilt from the verified ledger; the budget still runs out."""
    node = node_factory(planned_rounds=2)
    _, first = _train(node, 1)
    (node.config.state_dir / STATE_FILE).unlink()

    _, second = _train(node_factory(planned_rounds=2), 2)
    with pytest.raises(BudgetExceededError):
        _train(node_factory(planned_rounds=2), 3)

    assert second.epsilon > first.epsilon
    assert second.epsilon <= 3.0
    assert load_state(node.config.state_dir, kind="rdp").rounds == [("run-1", 1), ("run-1", 2)]


@pytest.mark.slow
def test_a_state_that_disagrees_with_the_ledger_is_refused(node_factory) -> None:
    """A state file from another participation never silently replaces the ledger's."""
    node = node_factory(planned_rounds=3)
    _train(node, 1)
    path = node.config.state_dir / STATE_FILE
    state = json.loads(path.read_text())
    state["rounds"] = [["run-9", 1]]
    path.write_text(json.dumps(state))

    with pytest.raises(PartnerStateError, match="disagrees with the partner's own ledger"):
        _train(node_factory(planned_rounds=3), 2)
