"""The release gate: a model is published only if an empirical audit backs each claim.

The partner trains through its real node (two rounds, LR on the demo spec, claimed
epsilon 1 at delta 1e-5, q = 0.25, 8 steps per round, C = 0.1: the power tests'
configuration, see tests/privacy/test_empirical_audit.py); the platform's gate then
replays the declared mechanisms through the node's training path on the platform's
own file with 2000 canaries. With a correct implementation the gate passes and the
card names the signed ledger entry; with each of the four broken implementations
(sigma = 0, noise / 10, clipping off, noise on part of the parameters) the lower
bound exceeds the claim and publication is blocked, with the failed audit in the
platform ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.clients.node import PartnerNode
from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation
from fedctr.federation.release_gate import (
    ReleaseBlocked,
    ReleaseGateSettings,
    declared_configurations,
    run_release_gate,
)
from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
from fedctr.privacy.ledger import PLATFORM_OWNER, PlatformEmpiricalAudit, read_ledger, verify_ledger
from fedctr.privacy.signing import generate_signing_key, save_private_key
from fedctr.server.platform.errors import PlatformError
from fedctr.server.platform.ledger import PlatformLedger
from fedctr.server.platform.orchestrator import FederationOutcome, FederationPlan
from fedctr.server.platform.publishing import PublishTarget, build_card_fields, publish_outcome
from fedctr.server.platform.rounds import PartnerTrainRecord, RoundLog
from fedctr.server.platform.strategies.registry import strategy_config
from tests.support.broken_dpsgd import BROKEN, register_broken_implementations

register_broken_implementations()

SPEC = builtin_spec_path("demo")
MODEL = model_config("lr")
ROUNDS = 2


@dataclass(frozen=True)
class Files:
    partner_log: Path
    platform_file: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    paths, platform_file = generate_federation(
        tmp_path_factory.mktemp("gate-logs"),
        partners=(PartnerProfile("shop-a", 1500, "parquet", 0, 0.7, -1.2),),
        platform_test_rows=1500,
    )
    return Files(paths["shop-a"], platform_file)


def _federation(files: Files, root: Path, implementation: str) -> FederationOutcome:
    """Two real rounds of one partner node, as the platform's round log records them."""
    key = root / "partner.key"
    save_private_key(generate_signing_key(), key)
    node = PartnerNode(
        PartnerConfig(
            partner_id="shop-a",
            data=files.partner_log,
            spec=SPEC,
            state_dir=root / "state",
            signing_key=key,
            ledger=root / "partner-ledger.jsonl",
            privacy=PrivacySettings(
                epsilon=1.0,
                delta=1e-5,
                planned_rounds=ROUNDS,
                sample_rate=0.25,
                max_grad_norm=0.1,
                dp_implementation=implementation,
            ),
            training=TrainingSettings(batch_size=300, local_epochs=2),
        )
    )
    spec = load_spec(SPEC)
    weights = build_model(spec, MODEL).state_dict()
    log = RoundLog()
    for r in range(1, ROUNDS + 1):
        weights, reply = node.train(
            weights, model_config=MODEL, spec_hash=spec.spec_hash, run_id="run-1", server_round=r
        )
        assert reply is not None
        record = log.round(r)
        record.train.append(
            PartnerTrainRecord("shop-a", node_id=1, epsilon=reply.epsilon, delta=1e-5, reply=reply)
        )
        record.aggregated = True
    model = build_model(spec, MODEL)
    model.load_state_dict(weights)
    plan = FederationPlan(
        run_id="run-1",
        rounds=ROUNDS,
        spec=spec,
        model=MODEL,
        strategy=strategy_config("fedavg", min_partners=1),
        work_dir=root / "run",
    )
    return FederationOutcome(plan=plan, model=model, round_log=log)


def _gate(files: Files, outcome: FederationOutcome, ledger: PlatformLedger):
    return run_release_gate(
        outcome,
        ReleaseGateSettings(data=files.platform_file, canaries=2000, seed=3),
        spec_path=SPEC,
        ledger=ledger,
    )


def _entries(path: Path, key) -> list[PlatformEmpiricalAudit]:
    """The gate's entries of a platform ledger whose chain and signatures verify."""
    read = read_ledger(path)
    assert verify_ledger(read, key.public_key(), owner=PLATFORM_OWNER) == []
    return [
        PlatformEmpiricalAudit.from_dict(e.body)
        for e in read.entries
        if e.kind == PlatformEmpiricalAudit.KIND
    ]


def test_a_correct_configuration_passes_and_the_card_names_its_signed_audit(
    files: Files, tmp_path: Path
) -> None:
    outcome = _federation(files, tmp_path, "fedctr-sparse")
    key = generate_signing_key()
    ledger = PlatformLedger(tmp_path / "platform.jsonl", key)

    (statement,) = _gate(files, outcome, ledger)

    (entry,) = _entries(ledger.path, key)
    assert entry.passed and statement.passed
    assert entry.partners == ("shop-a",) and entry.dp_implementation == "fedctr-sparse"
    declared = [outcome.round_log.round(r).train[0].reply for r in (1, 2)]
    assert entry.mechanisms == tuple(reply.release for reply in declared)
    assert entry.claimed_epsilon == pytest.approx(outcome.round_log.round(2).train[0].epsilon)
    assert sum(entry.histogram.included) + sum(entry.histogram.excluded) == entry.canaries
    assert statement.lower_bound == entry.lower_bound <= entry.claimed_epsilon
    card = build_card_fields(outcome, (statement,))
    assert card.empirical_audits == (statement,)
    assert statement.ledger_entry == read_ledger(ledger.path).entries[-1].hash


def test_partners_with_one_declared_configuration_share_one_audit(
    files: Files, tmp_path: Path
) -> None:
    outcome = _federation(files, tmp_path, "fedctr-sparse")
    twin = outcome.round_log
    for r in (1, 2):
        (record,) = twin.round(r).train
        twin.round(r).train.append(
            PartnerTrainRecord("shop-b", 2, record.epsilon, record.delta, record.reply)
        )
    (partners,) = declared_configurations(outcome).values()
    assert partners == ("shop-a", "shop-b")


def test_publish_refuses_a_statement_that_did_not_pass(files: Files, tmp_path: Path) -> None:
    outcome = _federation(files, tmp_path, "fedctr-sparse")
    ledger = PlatformLedger(tmp_path / "platform.jsonl", generate_signing_key())
    (statement,) = _gate(files, outcome, ledger)
    refuted = replace(statement, lower_bound=statement.claimed_epsilon + 1)
    with pytest.raises(PlatformError, match="not published"):
        publish_outcome(
            outcome,
            PublishTarget(
                registry=tmp_path / "registry",
                signing_key=tmp_path / "unused.key",
                ledger=ledger.path,
            ),
            empirical_audits=(refuted,),
        )
    assert not (tmp_path / "registry").exists()


@pytest.mark.slow
@pytest.mark.parametrize("implementation", sorted(BROKEN))
def test_a_broken_dp_sgd_blocks_publication_and_its_audit_stays_in_the_ledger(
    files: Files, tmp_path: Path, implementation: str
) -> None:
    outcome = _federation(files, tmp_path, implementation)
    key = generate_signing_key()
    ledger = PlatformLedger(tmp_path / "platform.jsonl", key)

    with pytest.raises(ReleaseBlocked, match="publication blocked"):
        _gate(files, outcome, ledger)

    (entry,) = _entries(ledger.path, key)
    assert not entry.passed
    assert entry.lower_bound > entry.claimed_epsilon
    assert entry.dp_implementation == implementation
