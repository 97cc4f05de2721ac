"""Secure aggregation in a whole federation: real partner nodes (Opacus DP-SGD, signed
ledgers) and the platform's real orchestrator, through the partners' ClientApp path
(client mod, training handler); only the transport is in-process (LocalGrid).

Pinned here: the platform never holds one partner's update, the unmasked model is the
plain FedAvg model within quantization error, the mode is in every ledger entry, the
card and the audit, and a partner refuses what a malicious platform asks of it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from fedctr.clients.errors import RoundAlreadyReleasedError
from fedctr.clients.node import PartnerNode
from fedctr.federation.client_app import handle_message
from fedctr.federation.config import load_platform_config
from fedctr.models import builtin_spec_path, model_config
from fedctr.privacy import wire as P
from fedctr.privacy.audit.contract import declared_values
from fedctr.privacy.ledger import PartnerRelease, read_ledger
from fedctr.privacy.secagg import PartnerSession, SecAggSettings
from fedctr.privacy.secagg.release import Sealer
from fedctr.privacy.wire import FieldClass, declared_keys
from fedctr.server.platform.errors import PlatformConfigError
from fedctr.server.platform.faults import FaultPlan, FaultStage, InjectedCrash
from fedctr.server.platform.journal import UpdateJournal
from fedctr.server.platform.orchestrator import JOURNAL_DIR, initial_model
from fedctr.server.registry import list_versions
from tests.support.local_federation import LocalGrid, local_federation, trained_rounds

ROUNDS = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_logs):
    """The same federation twice, same seeds: plain FedAvg and under SecAgg+."""
    logs, eval_file = synthetic_logs
    out = {}
    for name, settings in (("plain", None), ("secagg", SecAggSettings())):
        fed = local_federation(
            tmp_path_factory.mktemp(name),
            logs,
            eval_file,
            rounds=ROUNDS,
            secure_aggregation=settings,
        )
        outcome = fed.run()
        fed.publish(outcome)
        out[name] = (fed, outcome)
    return out


def test_the_unmasked_model_is_the_plain_fedavg_model_within_quantization_error(runs):
    (_, plain), (_, masked) = runs["plain"], runs["secagg"]
    a, b = plain.model.state_dict(), masked.model.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert abs(plain.final_metrics.auc - masked.final_metrics.auc) < 0.001
    assert all(r.aggregated and len(r.train) == 3 for r in masked.round_log.rounds.values())


def test_the_platform_holds_only_masked_inputs_never_an_update(runs):
    fed, outcome = runs["secagg"]
    journal = UpdateJournal(fed.plan.work_dir / JOURNAL_DIR)
    model_size = sum(v.numel() for v in outcome.model.state_dict().values())
    for rnd in range(1, ROUNDS + 1):
        replies = journal.messages(rnd)
        assert len(replies) == 3
        for msg in replies:
            arrays = msg.content[P.ARRAYS]
            assert list(arrays) == [P.MASKED]
            words = arrays[P.MASKED].numpy()
            assert words.dtype == np.int64 and words.size == model_size
            # uniform on Z_2^64: about half the words are "negative" as int64
            assert 0.4 < (words < 0).mean() < 0.6


def test_ledgers_card_and_audit_carry_the_mode(runs):
    fed, _ = runs["secagg"]
    for partner in fed.partners.values():
        bodies = [e.parsed_body() for e in read_ledger(partner.ledger).entries]
        releases = [b for b in bodies if isinstance(b, PartnerRelease)]
        assert len(releases) == ROUNDS
        assert {b.secure_aggregation for b in releases} == {"secagg+"}
        assert len({b.secagg_session for b in releases}) == ROUNDS  # one session per round
    version = list_versions(fed.registry)[-1]
    card = json.loads((fed.registry / "models" / version / "card.json").read_text())
    assert card["training"]["secure_aggregation"]["protocol"] == "secagg+"
    result = fed.audit()
    assert result.findings == ()
    assert all(r.secure_aggregation == "secagg+" for p in result.partners for r in p.rows)
    plain_fed, _ = runs["plain"]
    assert all(r.secure_aggregation == "none" for p in plain_fed.audit().partners for r in p.rows)


def test_a_partner_that_drops_after_masking_leaves_a_round_of_the_others(tmp_path, synthetic_logs):
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=1, secure_aggregation=SecAggSettings())

    class LossyGrid(LocalGrid):
        """Node 3's masked input is lost on the way (it shared keys, then vanished)."""

        def send_and_receive(self, messages, *, timeout=None):
            replies = super().send_and_receive(messages, timeout=timeout)
            return [
                r
                for r in replies
                if not (r.metadata.src_node_id == 3 and r.has_content() and P.ARRAYS in r.content)
            ]

    fed.grid = lambda: LossyGrid(fed.partners)  # type: ignore[method-assign]
    outcome = fed.run()
    record = outcome.round_log.rounds[1]
    assert record.aggregated and sorted(t.node_id for t in record.train) == [1, 2]
    assert outcome.final_metrics is not None and outcome.final_metrics.auc > 0.5


def test_strategies_that_need_single_updates_are_refused_under_secure_aggregation(
    tmp_path, synthetic_logs
):
    logs, eval_file = synthetic_logs
    fed = local_federation(
        tmp_path, logs, eval_file, strategy="fedmedian", secure_aggregation=SecAggSettings()
    )
    with pytest.raises(PlatformConfigError, match="needs each partner's update"):
        fed.run()


def test_platform_toml_turns_secure_aggregation_on_and_checks_it(tmp_path):
    base = (
        "[platform]\n"
        f'spec = "{builtin_spec_path("demo")}"\n'
        '[federation]\nrounds = 2\n[model]\nname = "lr"\n'
    )
    path = tmp_path / "platform.toml"
    path.write_text(base)
    assert load_platform_config(path).secure_aggregation is None
    path.write_text(base + "[secure_aggregation]\nneighbours = 4\n")
    assert load_platform_config(path).secure_aggregation == SecAggSettings(neighbours=4)
    path.write_text(base + "[secure_aggregation]\nneighbours = 3\n")
    with pytest.raises(PlatformConfigError, match=r"\[secure_aggregation\].*even"):
        load_platform_config(path)


# ---- a malicious platform, through the partner's ClientApp path ---------------------------
def _request(node: int, **fields) -> Message:
    return Message(
        RecordDict({P.SECAGG: ConfigRecord(fields)}), node, MessageType.TRAIN, group_id="1"
    )


SESSION = "ab" * 16


def test_a_partner_refuses_a_platform_that_swaps_its_public_key(synthetic_logs):
    state = RecordDict()
    settings = json.dumps(SecAggSettings().to_dict())
    setup = handle_message(
        lambda: None,  # type: ignore[arg-type,return-value]
        _request(7, stage="setup", session=SESSION, round=1, settings=settings),
        state=state,
    )
    own = setup.content[P.SECAGG]
    other = PartnerSession.start(
        session=SESSION, node=8, server_round=1, settings=SecAggSettings()
    ).public_keys()
    forged = handle_message(
        lambda: None,  # type: ignore[arg-type,return-value]
        _request(
            7,
            stage="share-keys",
            session=SESSION,
            round=1,
            nodes=P.node_ids_to_bytes([7, 8]),
            **{"keys-c": [other[0], other[0]], "keys-s": [own["key-s"], other[1]]},
        ),
        state=state,
    )
    assert forged.has_error()
    assert forged.error.reason == "problem=secagg-refused"  # the reason class, nothing else


def test_a_partner_answers_a_second_unmask_for_a_neighbour_with_a_refusal(synthetic_logs):
    """The platform says node 9 survived, then that it dropped: both of its secrets
    would unmask node 9 alone. The partner answers the first and refuses the second."""
    settings = SecAggSettings()
    nodes = [7, 8, 9]
    partners = {
        n: PartnerSession.start(session=SESSION, node=n, server_round=1, settings=settings)
        for n in nodes
    }
    keys = [partners[n].public_keys() for n in nodes]
    sealed = {}
    for n, p in partners.items():
        sealed[n] = p.share_keys(nodes, [c for c, _ in keys], [s for _, s in keys])
    for n, p in partners.items():
        senders = [m for m in nodes if m != n]
        cts = [sealed[m][1][sealed[m][0].index(n)] for m in senders]
        p.receive(senders, cts)
        p.seal(np.zeros(4, dtype=np.uint64))
    state = RecordDict({"fedctr-secagg": ConfigRecord({"json": partners[7].to_json()})})
    ask = dict(stage="unmask", session=SESSION, round=1)
    first = handle_message(
        lambda: None,  # type: ignore[arg-type,return-value]
        _request(7, **ask, active=P.node_ids_to_bytes(nodes), dropped=b""),
        state=state,
    )
    assert not first.has_error()
    second = handle_message(
        lambda: None,  # type: ignore[arg-type,return-value]
        _request(7, **ask, active=P.node_ids_to_bytes([7, 8]), dropped=P.node_ids_to_bytes([9])),
        state=state,
    )
    assert second.has_error() and second.error.reason == "problem=secagg-refused"


def test_a_partner_never_re_masks_a_released_round_under_another_session(runs):
    """Asked again for round 1 from the same model but in a new session (a platform that
    restarted the round, or one fishing for a second sum), the node refuses: the same
    update under two sets of masks would let the platform subtract two sums."""
    fed, _ = runs["secagg"]
    node_id, config = next(iter(fed.partners.items()))
    node = PartnerNode(config)
    other = PartnerSession.start(
        session="cd" * 16, node=node_id, server_round=1, settings=SecAggSettings()
    )
    with pytest.raises(RoundAlreadyReleasedError, match="masked for secure-aggregation session"):
        node.train(
            dict(initial_model(fed.plan).state_dict()),
            model_config=model_config("lr"),
            spec_hash=node.spec.spec_hash,
            run_id=fed.plan.run_id,
            server_round=1,
            seal=Sealer(other, 1),
        )


def test_a_crashed_secagg_run_resumes_and_an_interrupted_round_is_not_re_masked(
    tmp_path, synthetic_logs
):
    """A crash after round 1 committed: the resumed run re-checks round 1's journaled
    masked inputs (their session is over) and goes on. A crash after round 2's masked
    inputs arrived: that session's routing died with the platform, the round starts a
    new session, and every partner refuses to re-mask what it released (one update
    under two sets of masks would let the platform subtract two sums): round 2 is
    not aggregated, nobody trained or spent twice, and the audit passes."""
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=3, secure_aggregation=SecAggSettings())
    with pytest.raises(InjectedCrash):
        fed.run(faults=FaultPlan(FaultStage.AFTER_COMMIT, 1))
    with pytest.raises(InjectedCrash):
        fed.run(resume=True, faults=FaultPlan(FaultStage.AFTER_REPLIES, 2))
    outcome = fed.run(resume=True)
    rounds = outcome.round_log.rounds
    assert rounds[1].aggregated and rounds[3].aggregated and not rounds[2].aggregated
    assert {f.problem for f in rounds[2].failures} == {"already-released", "session-lost-in-crash"}
    assert len(rounds[2].rejected) == 3  # every release received is reported, not aggregated
    for config in fed.partners.values():
        assert sorted(trained_rounds(config)) == [(fed.plan.run_id, r) for r in (1, 2, 3)]
    fed.publish(outcome)
    assert fed.audit().findings == ()


def test_every_secagg_reply_carries_exactly_the_declared_keys(tmp_path, synthetic_logs):
    """Contract test on a real run: each protocol reply's record holds exactly the keys
    its stage declares, and each training reply exactly the train-reply keys plus one
    masked array; the privacy statement lists the protocol values as public."""
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=1, secure_aggregation=SecAggSettings())
    seen: list[tuple[str, dict[str, set[str]], list[str]]] = []

    class RecordingGrid(LocalGrid):
        def send_and_receive(self, messages, *, timeout=None):
            messages = list(messages)
            stages = {
                m.metadata.dst_node_id: str(m.content.config_records[P.SECAGG]["stage"])
                for m in messages
            }
            replies = list(super().send_and_receive(messages, timeout=timeout))
            for r in replies:
                assert not r.has_error()
                records = {k: set(v) for k, v in r.content.config_records.items()}
                records |= {k: set(v) for k, v in r.content.metric_records.items()}
                seen.append(
                    (stages[r.metadata.src_node_id], records, list(r.content.array_records))
                )
            return replies

    fed.grid = lambda: RecordingGrid(fed.partners)  # type: ignore[method-assign]
    assert fed.run().round_log.rounds[1].aggregated
    train_keys = declared_keys("train-reply")
    assert sorted({stage for stage, _, _ in seen}) == ["collect", "setup", "share-keys", "unmask"]
    for stage, records, arrays in seen:
        if stage == "collect":
            assert records == {P.METRICS: train_keys[P.METRICS], P.REPORT: train_keys[P.REPORT]}
            assert arrays == [P.ARRAYS]
        else:
            assert records == {P.SECAGG: set(P.SECAGG_STAGE_KEYS[stage])} and arrays == []
    public = {(v.record, v.key) for v in declared_values(FieldClass.PUBLIC)}
    assert {(P.SECAGG, k) for keys in P.SECAGG_STAGE_KEYS.values() for k in keys} <= public
