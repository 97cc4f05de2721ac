"""A partner node with [privacy] unit = "user": the unit travels from the config through
calibration, the budget check, the signed ledger, the reply, and the auditor's
independent recomputation, with no group-privacy multiplier anywhere."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant

from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.clients.errors import PartnerConfigError
from fedctr.clients.node import PartnerNode
from fedctr.models import FeatureSpec, build_model, builtin_spec_path, model_config
from fedctr.privacy.audit.directories import audit_directories
from fedctr.privacy.audit.statement import privacy_statement
from fedctr.privacy.ledger import read_ledger
from fedctr.privacy.signing import generate_signing_key, save_private_key, save_public_key
from fedctr.privacy.wire import TrainReply

MODEL = model_config("lr")


def _config(root: Path, log: Path, *, unit: str, spec: Path | None = None) -> PartnerConfig:
    root.mkdir(parents=True, exist_ok=True)
    key = root / "shop-a.key"
    if not key.exists():
        save_private_key(generate_signing_key(), key)
    return PartnerConfig(
        partner_id="shop-a",
        data=log,
        spec=spec or builtin_spec_path("demo"),
        state_dir=root / "state",
        signing_key=key,
        ledger=root / "shop-a.jsonl",
        privacy=PrivacySettings(
            epsilon=3.0,
            delta=1e-5,
            planned_rounds=2,
            sample_rate=0.1,
            max_grad_norm=1.0,
            unit=unit,
            max_rows_per_user=4,
        ),
        training=TrainingSettings(batch_size=64, local_epochs=1, learning_rate=0.05),
    )


def _train(node: PartnerNode, spec: FeatureSpec, rnd: int) -> TrainReply:
    torch.manual_seed(0)
    weights = build_model(spec, MODEL).state_dict()
    _, reply = node.train(
        weights,
        model_config=MODEL,
        spec_hash=spec.spec_hash,
        run_id="run-1",
        server_round=rnd,
        seed=rnd,
    )
    assert reply is not None
    return reply


def test_a_user_level_release_states_its_unit_everywhere(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    reply = _train(PartnerNode(_config(tmp_path, logs["shop-a"], unit="user")), demo_spec, 1)

    assert (reply.unit_of_privacy, reply.unit.max_rows) == ("user", 4)
    records = reply.to_records()["report"]
    assert (records["unit-of-privacy"], records["max-rows-per-unit"]) == ("user", 4)
    body = read_ledger(tmp_path / "shop-a.jsonl").entries[0].body
    assert (body["unit_of_privacy"], body["max_rows_per_unit"]) == ("user", 4)
    assert TrainReply.from_records(reply.to_records()).unit == reply.unit


def test_user_level_epsilon_carries_no_group_privacy_multiplier(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    """Same declared (budget, q, steps): the same sigma and the same epsilon as an
    example-level partner, equal to Opacus' accountant at the user rate; not k x eps."""
    logs, _ = synthetic_logs
    users = _train(PartnerNode(_config(tmp_path / "u", logs["shop-a"], unit="user")), demo_spec, 1)
    rows = _train(
        PartnerNode(_config(tmp_path / "e", logs["shop-a"], unit="example")), demo_spec, 1
    )

    assert users.release == rows.release
    assert users.epsilon == rows.epsilon
    check = RDPAccountant()
    check.history = [(users.release.noise_multiplier, 0.1, users.release.steps)]
    assert users.epsilon == pytest.approx(check.get_epsilon(delta=1e-5), rel=1e-9)
    assert users.epsilon <= 3.0


def test_the_audit_recomputes_user_level_epsilon_from_the_ledger(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    config = _config(tmp_path / "node", logs["shop-a"], unit="user")
    for rnd in (1, 2):
        last = _train(PartnerNode(config), demo_spec, rnd)
    ledgers, keys = tmp_path / "ledgers", tmp_path / "keys"
    ledgers.mkdir(), keys.mkdir()
    (ledgers / "shop-a.jsonl").write_bytes(config.ledger.read_bytes())
    from fedctr.privacy.signing import load_private_key

    save_public_key(load_private_key(config.signing_key), keys / "shop-a.pub")

    result = audit_directories(ledgers_dir=ledgers, keys_dir=keys, registry_dir=None)

    (summary,) = result.partners
    final = summary.final
    assert final is not None and final.unit_of_privacy == "user"
    assert final.claimed == pytest.approx(last.epsilon)
    assert final.independent_rdp == pytest.approx(last.epsilon, rel=0.01)
    assert not final.understated
    statement = privacy_statement(result)
    assert statement.unit_of_privacy.startswith("one user")
    assert "add/remove all rows of one user" in statement.neighbouring
    assert "for one user" in statement.partners[0].sentence


def test_the_unit_cannot_change_within_one_participation(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    logs, _ = synthetic_logs
    _train(PartnerNode(_config(tmp_path, logs["shop-a"], unit="example")), demo_spec, 1)

    with pytest.raises(PartnerConfigError, match="example-level releases"):
        _train(PartnerNode(_config(tmp_path, logs["shop-a"], unit="user")), demo_spec, 2)


def test_user_level_needs_a_user_key_and_a_per_user_implementation(
    tmp_path: Path, synthetic_logs
) -> None:
    logs, _ = synthetic_logs
    spec_without_key = tmp_path / "spec.toml"
    text = builtin_spec_path("demo").read_text().replace('user_key = ["user_id"]', "")
    spec_without_key.write_text(text)
    with pytest.raises(PartnerConfigError, match="user_key"):
        PartnerNode(_config(tmp_path, logs["shop-a"], unit="user", spec=spec_without_key))

    with pytest.raises(PartnerConfigError, match="clips per row"):
        replace(
            _config(tmp_path, logs["shop-a"], unit="user").privacy,
            dp_implementation="opacus-ghost",
        )


def test_the_delta_check_counts_users_not_rows(
    tmp_path: Path, synthetic_logs, demo_spec: FeatureSpec
) -> None:
    """delta must be below 1/n for n units, here the partner's users (a mechanism that
    publishes each user's rows with probability delta exposes n x delta users)."""
    logs, _ = synthetic_logs
    config = _config(tmp_path, logs["shop-a"], unit="user")
    node = PartnerNode(replace(config, privacy=replace(config.privacy, delta=0.01)))
    with pytest.raises(PartnerConfigError, match=r"1/n for its \d+ users"):
        _train(node, demo_spec, 1)
