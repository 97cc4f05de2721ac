"""A platform that crashes mid-run resumes from its durable state and loses nothing.

The platform runs in a child process that ends itself with ``os._exit`` (what SIGKILL
leaves: no cleanup, no flush) at every stage of a round and while publishing; the
resumed run must publish the very model an uninterrupted run publishes from the same
updates, with every release counted once on both sides of the boundary, no round
trained twice by any partner, and the audit passing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from fedctr.privacy.card import WEIGHTS_FILE
from fedctr.privacy.ledger import (
    PartnerRelease,
    PartnerWithheld,
    PlatformPublish,
    PlatformReport,
    read_ledger,
)
from fedctr.server.platform.errors import ResumeError
from fedctr.server.platform.faults import CRASH_EXIT_CODE, FaultPlan, FaultStage, InjectedCrash
from fedctr.server.platform.orchestrator import JOURNAL_DIR
from fedctr.server.platform.run_state import RUN_STATE_FILE, checkpoint_path
from fedctr.server.platform.strategies.registry import strategy_config
from fedctr.server.registry import PublishedModel, list_versions
from tests.support.local_federation import (
    LocalFederation,
    crash_platform,
    local_federation,
    trained_rounds,
)

ROUNDS = 3


def _bodies(path: Path, kind: type) -> list:
    return [e.parsed_body() for e in read_ledger(path).entries if e.kind == kind.KIND]


Weights = dict[str, torch.Tensor]


def _weights(published: PublishedModel) -> Weights:
    return load((published.path / WEIGHTS_FILE).read_bytes())


def _same_model(a: Weights, b: Weights) -> bool:
    """Equal up to float summation order (embedding-gradient accumulation is not
    bit-reproducible across runs; a lost update or optimiser state moves far more)."""
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def _uninterrupted(root: Path, logs, eval_file, strategy: str) -> Weights:
    fed = local_federation(root, logs, eval_file, rounds=ROUNDS, strategy=strategy)
    return _weights(fed.publish(fed.run()).published)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_logs) -> dict[str, Weights]:
    """Published weights of uninterrupted runs, by strategy."""
    logs, eval_file = synthetic_logs
    return {
        s: _uninterrupted(tmp_path_factory.mktemp(f"ref-{s}"), logs, eval_file, s)
        for s in ("fedavg", "fedadam")
    }


def _assert_exactly_once(fed: LocalFederation) -> None:
    """Each partner released each round once, nothing withheld; the platform reported
    each release once; one publish entry; and the independent audit passes."""
    for config in fed.partners.values():
        rounds = [b.round for b in _bodies(config.ledger, PartnerRelease)]
        assert rounds == list(range(1, ROUNDS + 1)), config.partner_id
        assert _bodies(config.ledger, PartnerWithheld) == []
    reports = Counter((b.round, b.partner_id) for b in _bodies(fed.platform_ledger, PlatformReport))
    assert set(reports.values()) == {1}
    assert len(reports) == ROUNDS * len(fed.partners)
    assert len(_bodies(fed.platform_ledger, PlatformPublish)) == 1
    assert len(list_versions(fed.registry)) == 1
    audit = fed.audit()
    assert audit.passed, [str(f) for f in audit.findings]


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage",
    [
        FaultStage.BEFORE_SEND,
        FaultStage.AFTER_REPLIES,
        FaultStage.AFTER_AGGREGATION,
        FaultStage.AFTER_COMMIT,
    ],
)
@pytest.mark.parametrize("strategy", ["fedavg", "fedadam"])
def test_a_platform_killed_at_any_stage_of_a_round_resumes_to_the_uninterrupted_model(
    stage: FaultStage, strategy: str, tmp_path: Path, synthetic_logs, reference
) -> None:
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=ROUNDS, strategy=strategy)
    assert crash_platform(fed, stage, 2) == CRASH_EXIT_CODE

    outcome = fed.run(resume=True)
    published = fed.publish(outcome).published

    assert _same_model(_weights(published), reference[strategy])
    _assert_exactly_once(fed)
    # Every partner trained every round once: replies that reached the platform before
    # the crash were taken from its journal, never asked for again.
    for config in fed.partners.values():
        assert trained_rounds(config) == [(fed.plan.run_id, r) for r in range(1, ROUNDS + 1)]
    rows = [json.loads(line) for line in (fed.plan.work_dir / "rounds.jsonl").open()]
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert outcome.final_metrics is not None


@pytest.mark.slow
def test_a_platform_killed_while_publishing_records_the_signed_model_once(
    tmp_path: Path, synthetic_logs, reference
) -> None:
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=ROUNDS)
    assert crash_platform(fed, FaultStage.DURING_PUBLISH, ROUNDS) == CRASH_EXIT_CODE
    assert _bodies(fed.platform_ledger, PlatformPublish) == []  # signed, not yet ledgered
    assert len(list_versions(fed.registry)) == 1

    resumed = fed.run(resume=True)  # nothing left to train: rebuilt from the journal
    published = fed.publish(resumed).published

    assert _same_model(_weights(published), reference["fedavg"])
    assert sum(fed.asked(node, r) for node in fed.partners for r in range(1, 4)) == 0
    _assert_exactly_once(fed)


def test_a_replayed_release_arriving_twice_counts_once(
    tmp_path: Path, synthetic_logs, reference
) -> None:
    """A partner whose reply reached the journal and which is asked again (a round too
    short of journaled replies) re-sends its release; the round counts it once."""
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=ROUNDS)
    with pytest.raises(InjectedCrash):
        fed.run(faults=FaultPlan(FaultStage.AFTER_REPLIES, 2))
    journal = fed.plan.work_dir / JOURNAL_DIR / "round-0002"
    kept = sorted(journal.iterdir())
    for extra in kept[1:]:  # below min_partners: the round must ask the others again
        extra.unlink()

    published = fed.publish(fed.run(resume=True)).published

    assert _same_model(_weights(published), reference["fedavg"])
    assert sum(fed.asked(node, 2) for node in fed.partners) == len(fed.partners) + 2
    _assert_exactly_once(fed)


def test_resuming_refuses_another_plan_a_changed_journal_or_checkpoint(
    tmp_path: Path, synthetic_logs
) -> None:
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=ROUNDS)
    with pytest.raises(InjectedCrash):
        fed.run(faults=FaultPlan(FaultStage.AFTER_COMMIT, 2))

    with pytest.raises(ResumeError, match="resume it"):
        fed.run()  # a fresh start would overwrite a run with committed rounds

    original = fed.plan
    fed.plan = original.__class__(
        **{**original.__dict__, "strategy": strategy_config("fedadam", min_partners=2)}
    )
    with pytest.raises(ResumeError, match="another plan"):
        fed.run(resume=True)
    fed.plan = original

    checkpoint = checkpoint_path(fed.plan.work_dir, 2)
    saved = checkpoint.read_bytes()
    checkpoint.write_bytes(saved[:-8] + b"\x00" * 8)
    with pytest.raises(ResumeError, match="checkpoint"):
        fed.run(resume=True)
    checkpoint.write_bytes(saved)

    reply = sorted((fed.plan.work_dir / JOURNAL_DIR / "round-0001").iterdir())[0]
    data = reply.read_bytes()
    reply.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ResumeError, match="journal"):
        fed.run(resume=True)


def test_a_run_that_never_committed_cannot_be_resumed(tmp_path: Path, synthetic_logs) -> None:
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=ROUNDS, run_id="never-ran")
    with pytest.raises(ResumeError, match=RUN_STATE_FILE):
        fed.run(resume=True)


def test_the_test_notices_a_resume_that_forgets_the_server_optimiser(
    tmp_path: Path, synthetic_logs, reference
) -> None:
    """FedAdam resumed without its saved moments publishes another model: the comparison
    above is sharp enough to catch lost strategy state."""
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=ROUNDS, strategy="fedadam")
    with pytest.raises(InjectedCrash):
        fed.run(faults=FaultPlan(FaultStage.AFTER_COMMIT, 2))
    for saved in (fed.plan.work_dir / "checkpoints").glob("strategy-*.safetensors"):
        saved.unlink()

    published = fed.publish(fed.run(resume=True)).published

    assert not _same_model(_weights(published), reference["fedadam"])
