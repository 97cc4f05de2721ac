"""Distributed DP: partners add Skellam noise *shares* under SecAgg+, so only the sums
the platform unmasks carry the full noise. Real partner nodes and orchestrator; the
transport is in-process (LocalGrid).

What must hold, and can fail: the noise is really there and adds up across partners;
a partner never releases a share-noised update without secure aggregation; it never
helps unmask a sum of fewer inputs than its shares were calibrated for; its budget is
spent against the platform as the Skellam accountant says, and the audit recomputes
that independently and states the guarantee against the platform and a coalition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedctr.privacy.audit.statement import privacy_statement
from fedctr.privacy.distributed import epsilon as distributed_epsilon
from fedctr.privacy.distributed.mechanism import skellam_of
from fedctr.privacy.ledger import PartnerRelease, read_ledger
from fedctr.privacy.randomness import SecureRandom
from fedctr.privacy.secagg import SecAggRefused, SecAggSettings
from fedctr.privacy.secagg.release import Sealer
from tests.privacy.test_secagg_protocol import Round
from tests.support.local_federation import local_federation

DISTRIBUTED = {"noise": "distributed", "min_noise_shares": 3, "sample_rate": 0.5}


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_logs):
    logs, eval_file = synthetic_logs
    fed = local_federation(
        tmp_path_factory.mktemp("ddp"),
        logs,
        eval_file,
        rounds=4,
        secure_aggregation=SecAggSettings(),
        privacy=DISTRIBUTED,
    )
    outcome = fed.run()
    fed.publish(outcome)
    return fed, outcome


def test_every_round_is_aggregated_from_distributed_releases_within_the_budget(run):
    fed, outcome = run
    assert all(r.aggregated and len(r.train) == 3 for r in outcome.round_log.rounds.values())
    for partner in fed.partners.values():
        bodies = [e.parsed_body() for e in read_ledger(partner.ledger).entries]
        releases = [b for b in bodies if isinstance(b, PartnerRelease)]
        assert len(releases) == 4
        assert all(b.mechanism.distributed is not None and b.mechanism.steps == 1 for b in releases)
        assert all(b.mechanism.distributed.min_shares == 3 for b in releases)
        # what the ledger claims is what the Skellam accountant gives for those releases
        history = [skellam_of(b.mechanism) for b in releases]
        assert releases[-1].epsilon_after == pytest.approx(distributed_epsilon(history, 1e-5))
        assert releases[-1].epsilon_after <= 4.0 * (1 + 1e-9)


def test_the_audit_recomputes_it_independently_and_states_who_it_protects_against(run):
    fed, _ = run
    result = fed.audit()
    assert result.findings == ()
    for summary in result.partners:
        final = summary.rows[-1]
        assert final.noise_shares == 3
        assert final.independent_rdp == pytest.approx(final.claimed, rel=1e-6)
        assert final.epsilon_coalition > final.claimed  # two colluders remove their shares
    sentence = privacy_statement(result).partners[0].sentence
    assert "against the platform and the public" in sentence
    assert "no single update is DP on its own" in sentence
    assert "2 colluding partners" in sentence


def test_a_distributed_partner_refuses_a_round_without_secure_aggregation(tmp_path, synthetic_logs):
    logs, eval_file = synthetic_logs
    fed = local_federation(tmp_path, logs, eval_file, rounds=1, privacy=DISTRIBUTED)
    outcome = fed.run()
    record = outcome.round_log.rounds[1]
    assert not record.aggregated and record.train == []
    assert {f.problem for f in record.failures} == {"config"}
    for partner in fed.partners.values():  # nothing released, nothing spent
        assert not partner.ledger.exists() or not [
            e for e in read_ledger(partner.ledger).entries if e.kind == "partner-release"
        ]


def test_noise_shares_are_added_and_sum_to_the_calibrated_noise():
    """Three partners seal a zero update with their shares: the unmasked sum is pure noise
    of variance 2 * 3 * mu_share (in grid units), which is what was calibrated."""
    r = Round(3, d=20_000)
    mu_share = 400.0
    base = {"w": torch.zeros(20_000)}
    for node, session in r.partners.items():
        sealer = Sealer(session, 1, SecureRandom.from_key(bytes([node % 256]) * 32), mu_share)
        masked = sealer(base, base)["masked"].numpy().view(np.uint64)
        r.masked[node] = masked
    total = r.unmask() * r.settings.scale  # back to grid units
    assert abs(total.mean()) < 1.0
    assert total.var() == pytest.approx(2 * 3 * mu_share, rel=0.05)


def test_a_partner_never_helps_unmask_fewer_inputs_than_its_shares_assume():
    """The SecAgg threshold of 5 partners is 3; a partner whose noise share needs 4
    partners' shares in a sum refuses an unmask over 3, whatever the threshold says."""
    r = Round(5)
    r.seal()
    r.partners[101].min_active = 4
    with pytest.raises(SecAggRefused, match="fewer than the threshold 4"):
        r.partners[101].unmask([101, 102, 103], [104, 105])
    assert r.partners[102].unmask([101, 102, 103], [104, 105])  # a local-noise partner would
