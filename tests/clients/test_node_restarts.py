"""A partner node that restarts never trains a released round twice and never forgets
a round whose noise was drawn.

Kills are real: the round runs in a child process that SIGKILLs itself at the chosen
point; the restarted node (a new object over the same state folder and ledger) must
account for what happened, and the independent audit must see it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from fedctr.clients.errors import RoundAlreadyReleasedError
from fedctr.clients.node import PartnerNode
from fedctr.clients.outbox import OUTBOX_DIR
from fedctr.federation.replies import error_for
from fedctr.models import build_model, model_config, state_dict_sha256
from fedctr.privacy.audit.loading import load_ledger
from fedctr.privacy.audit.partner_checks import check_partner
from fedctr.privacy.audit.result import AuditResult
from fedctr.privacy.audit.statement import privacy_statement
from fedctr.privacy.ledger import PartnerRelease, PartnerWithheld, read_ledger
from fedctr.privacy.signing import load_private_key
from fedctr.privacy.wire import Problem
from tests.support.local_federation import kill_partner_mid_round, local_federation

MODEL = model_config("lr")
RUN = "run-restarts"


@pytest.fixture
def partner(tmp_path: Path, synthetic_logs):
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, {"shop-a": logs["shop-a"]}, eval_file, rounds=3)
    return fed.partners[1]


def _weights(seed: int) -> dict[str, torch.Tensor]:
    from fedctr.models import builtin_spec_path, load_spec

    torch.manual_seed(seed)
    return build_model(load_spec(builtin_spec_path("demo")), MODEL).state_dict()


def _train(config, weights, server_round: int):
    node = PartnerNode(config)
    return node.train(
        weights,
        model_config=MODEL,
        spec_hash=node.spec.spec_hash,
        run_id=RUN,
        server_round=server_round,
        seed=server_round,
    )


def _kinds(config) -> list[tuple[str, int]]:
    return [(e.kind, e.parsed_body().round) for e in read_ledger(config.ledger).entries]


def _spent(config) -> float:
    node = PartnerNode(config)
    return node.load_state().accountant.epsilon(config.privacy.delta)


def test_a_round_asked_for_again_is_resent_not_retrained(partner) -> None:
    """The same request after a lost reply gets the same update and the same signed
    entry; nothing is trained, spent or ledgered again."""
    weights = _weights(0)
    update, reply = _train(partner, weights, 1)
    spent = _spent(partner)

    again, reply_again = _train(partner, weights, 1)

    assert state_dict_sha256(again) == state_dict_sha256(update) == reply.update_hash
    assert reply_again == reply
    assert _spent(partner) == spent
    assert _kinds(partner) == [("partner-release", 1)]


def test_a_released_round_asked_for_from_another_model_is_refused(partner) -> None:
    _train(partner, _weights(0), 1)

    with pytest.raises(RoundAlreadyReleasedError, match="will not train the round twice"):
        _train(partner, _weights(1), 1)
    assert error_for(RoundAlreadyReleasedError("x")).problem is Problem.ALREADY_RELEASED
    assert _kinds(partner) == [("partner-release", 1)]


def test_a_lost_outbox_copy_refuses_rather_than_training_again(partner) -> None:
    weights = _weights(0)
    _train(partner, weights, 1)
    for kept in (partner.state_dir / OUTBOX_DIR).iterdir():
        kept.unlink()

    with pytest.raises(Exception, match="cannot be re-sent"):
        _train(partner, weights, 1)
    assert _kinds(partner) == [("partner-release", 1)]


@pytest.mark.parametrize(
    ("die_at", "reason"),
    [("training", "stopped-while-training"), ("before-release", "stopped-before-release")],
)
def test_a_node_killed_mid_round_counts_the_round_and_marks_it_withheld(
    partner, die_at: str, reason: str
) -> None:
    weights = _weights(0)
    _, first = _train(partner, weights, 1)

    code = kill_partner_mid_round(partner, weights, run_id=RUN, server_round=2, die_at=die_at)
    assert code == -signal.SIGKILL

    restarted = PartnerNode(partner)
    state = restarted.load_state()  # settles the interrupted round
    entries = read_ledger(partner.ledger).entries
    withheld = entries[-1].parsed_body()
    assert isinstance(withheld, PartnerWithheld)
    assert (withheld.round, withheld.reason) == (2, reason)
    assert state.pending is None and (RUN, 2) in state.rounds
    assert withheld.epsilon_after > first.epsilon  # the round's noise is counted
    assert withheld.epsilon_after == pytest.approx(state.accountant.epsilon(1e-5))

    # The platform asks again (it never got round 2): the node trains it, spending again.
    _, retried = _train(partner, weights, 2)
    assert retried.epsilon > withheld.epsilon_after
    assert _kinds(partner) == [
        ("partner-release", 1),
        ("partner-withheld", 2),
        ("partner-release", 2),
    ]

    # The auditor composes the withheld round with the releases and says so.
    loaded = load_ledger(
        partner.ledger,
        load_private_key(partner.signing_key).public_key(),
        owner=partner.partner_id,
        role="partner-ledger",
    )
    spends = [r for r in loaded.records if isinstance(r.body, PartnerRelease | PartnerWithheld)]
    summary, findings = check_partner(
        partner.partner_id, str(partner.ledger), len(loaded.records), spends, tolerance=0.01
    )
    assert findings == []
    assert [r.withheld for r in summary.rows] == [None, reason, None]
    statement = privacy_statement(
        AuditResult(findings=(), partners=(summary,), lineage=(), inputs=(), tolerance=0.01)
    )
    sentence = statement.partners[0].sentence
    assert "2 releases and 1 withheld round" in sentence
    assert "spent without a release" in sentence


def test_a_node_killed_mid_round_cannot_train_past_its_budget_by_restarting(partner) -> None:
    """Three planned rounds: a round killed twice still uses up budget, so the node
    refuses before a free fourth attempt could happen."""
    weights = _weights(0)
    for rnd in (1, 2):
        code = kill_partner_mid_round(
            partner, weights, run_id=RUN, server_round=rnd, die_at="training"
        )
        assert code == -signal.SIGKILL
    _train(partner, weights, 3)
    from fedctr.privacy import BudgetExceededError

    with pytest.raises(BudgetExceededError):
        _train(partner, weights, 4)
