"""The one-run empirical audit: its bound (golden values, properties) and its power.

Power: four deliberately broken DP-SGD implementations, registered here (never in
product code), run through the partner's real training path; each must be caught
(lower bound above the claimed epsilon). Soundness: the correct implementation is not.

Why these numbers catch every bug (claimed epsilon 1, delta 1e-5, Poisson q = 0.25,
2 local epochs = 8 steps per round, 2 rounds, C = 0.1, m = 2000 canaries, LR on the
demo spec, 1500 real rows; the node calibrates sigma ~ 4.45):

* correct: a canary's score is its own rows' noisy update on its gradient direction;
  its mean shift over the noise's std is about ``q sqrt(T) / sigma ~ 0.22`` (T = 16
  steps), so guesses are barely better than coins: measured bounds 0-0.15.
* sigma x 0.1: the shift is ~2.2 std, the top 10% of scores are ~97% "in": bound ~2.1-2.6.
* clipping off: a label-1 canary's gradient has norm ~|p - 1| sqrt(6) ~ 2 against
  C = 0.1 (C must bind on canaries for a clipping bug to show), so its unclipped
  own-row signal is ~18x the clipped one while the noise stays sigma C: bound ~2.3-2.8.
* sigma = 0, or noise on the dense layer only (the embedding tables get none): an
  out-canary's own rows never move, so only in-canaries never sampled in 16 steps
  (~1%) are missed: bound ~4.2, near the ceiling of m = 2000 with the Bonferroni grid.

Each broken implementation keeps the accounting honest (the accountant is stepped with
the declared sigma), which is exactly the bug the ledger-based audit cannot see.
One audit takes ~1-2 s here, most of it the node's RDP calibration.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from fedctr.clients.canary_audit.run import (
    EmpiricalAuditError,
    EmpiricalAuditResult,
    make_canaries,
    run_empirical_audit,
)
from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.models import builtin_spec_path, load_spec, model_config
from fedctr.models.logs.reader import EncodedData, read_partner_log
from fedctr.privacy.audit.one_run import (
    CanaryScoreError,
    count_correct,
    default_guess_grid,
    epsilon_lower_bound,
    epsilon_lower_bound_from_counts,
    max_epsilon_lower_bound,
    one_run_p_value,
)
from fedctr.privacy.errors import InvalidPrivacyParameter, PrivacyError
from tests.support.broken_dpsgd import BROKEN, register_broken_implementations

register_broken_implementations()

# ---------------------------------------------------------------------------------------
# Golden values from google-deepmind/jax_privacy, jax_privacy/auditing.py at commit
# 8967688c26d46f3b74bfdfe61ef1f984b887abab: the file was loaded as a module (with numpy,
# scipy and dp_accounting 0.6.0) and ``_epsilon_one_run(0, m, r, v, 1 - confidence,
# delta)`` / ``_one_run_p_value(m, r, v, eps, delta)`` printed with repr().
GOLDEN_BOUNDS = [  # (m, guesses, correct, confidence, delta, epsilon)
    (1000, 100, 90, 0.95, 1e-5, 1.6261436787042223),
    (1000, 100, 100, 0.95, 0.0, 3.492965346169885),
    (200, 200, 150, 0.95, 1e-5, 0.8211125035846253),
    (10000, 2000, 1500, 0.95, 1e-6, 1.012597287902366),
    (500, 50, 50, 0.95, 1e-5, 2.770507062387001),
    (1000, 1000, 1000, 0.95, 1e-5, 5.782283131572193),
    (100, 10, 6, 0.95, 1e-5, 0.0),
    (2000, 200, 190, 1 - 0.05 / 18, 1e-5, 2.015868820509424),
    (1000, 300, 250, 0.99, 1e-3, 0.0),  # 2 m delta = 2: the delta term alone is > 1%
]
GOLDEN_P_VALUES = [  # (m, guesses, correct, epsilon, delta, p)
    (1000, 100, 90, 1.0, 1e-5, 0.0008412885614385309),
    (1000, 100, 90, 2.0, 1e-3, 0.5858322715128114),
    (100, 100, 80, 0.5, 1e-2, 0.07674526832108462),
    (50, 20, 20, 3.0, 0.0, 0.37842134627078083),
]
# ``CanaryScoreAuditor(in, out).epsilon_one_run(0.05, 1e-6, threshold_strategy=
# Explicit(t))`` with in/out = n deterministic N(shift, 1) / N(0, 1) scores (their tests'
# ``_deterministic_normal``): one-sided guesses "in" for every score >= t.
GOLDEN_SCORE_BOUNDS = [  # (shift, t, n, epsilon)
    (2.0, 1.5, 1000, 2.1192254142286835),
    (1.0, 1.0, 1000, 0.9931023598811792),
    (4.0, 2.0, 500, 3.2828138571506975),
]


def _deterministic_normal(mu: float, n: int) -> np.ndarray:
    cdf = np.linspace(0, 1, n, endpoint=False) + 1 / (2 * n)
    return scipy.stats.norm.ppf(cdf) + mu


@pytest.mark.parametrize(("m", "r", "v", "confidence", "delta", "expected"), GOLDEN_BOUNDS)
def test_bound_from_counts_matches_jax_privacy(m, r, v, confidence, delta, expected):
    got = epsilon_lower_bound_from_counts(
        m=m, guesses=r, correct=v, confidence=confidence, delta=delta
    )
    assert got == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(("m", "r", "v", "eps", "delta", "expected"), GOLDEN_P_VALUES)
def test_p_value_matches_jax_privacy(m, r, v, eps, delta, expected):
    got = one_run_p_value(m=m, guesses=r, correct=v, epsilon=eps, delta=delta)
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("shift", "t", "n", "expected"), GOLDEN_SCORE_BOUNDS)
def test_bound_from_scores_matches_jax_privacy(shift, t, n, expected):
    scores = np.concatenate([_deterministic_normal(shift, n), _deterministic_normal(0.0, n)])
    membership = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    k = int((scores >= t).sum())
    bound = epsilon_lower_bound(scores, membership, confidence=0.95, delta=1e-6, grid=[(k, 0)])
    assert bound.epsilon == pytest.approx(expected, abs=1e-5)
    assert (bound.guesses, bound.candidates) == (k, 1)


def test_more_correct_guesses_give_a_larger_bound():
    bounds = [
        epsilon_lower_bound_from_counts(m=1000, guesses=200, correct=v, confidence=0.95, delta=1e-5)
        for v in range(100, 201, 10)
    ]
    assert bounds[0] == 0.0
    assert all(b2 > b1 for b1, b2 in itertools.pairwise(bounds[2:]))
    assert bounds == sorted(bounds)  # 100/200 right is chance: no bound


def test_random_guesses_give_no_bound_at_95_percent():
    """Scores independent of membership: the bound is 0 in >= 95% of audits (it is a
    95% lower bound of the true epsilon, 0) and never large."""
    rng = np.random.default_rng(0)
    bounds = np.array(
        [
            epsilon_lower_bound(
                rng.normal(size=500), rng.random(500) < 0.5, confidence=0.95, delta=1e-5
            ).epsilon
            for _ in range(200)
        ]
    )
    assert np.mean(bounds > 0) <= 0.05
    assert bounds.max() < 0.5


def test_bound_never_exceeds_what_m_canaries_can_show():
    m = 400
    ceiling = max_epsilon_lower_bound(m, confidence=0.95, delta=1e-5)
    membership = np.r_[np.ones(m // 2, bool), np.zeros(m // 2, bool)]
    perfect = epsilon_lower_bound(membership.astype(float), membership, confidence=0.95, delta=1e-5)
    assert perfect.correct == perfect.guesses == m  # the balanced guess on every canary
    assert 0 < perfect.epsilon < ceiling  # the Bonferroni correction costs a little
    full_level = epsilon_lower_bound(
        membership.astype(float), membership, confidence=0.95, delta=1e-5, grid=[(m // 2, m // 2)]
    )
    assert full_level.epsilon == pytest.approx(ceiling)
    rng = np.random.default_rng(1)
    for _ in range(20):
        b = rng.random(m) < 0.5
        scores = b * rng.uniform(0, 5) + rng.normal(size=m)
        assert epsilon_lower_bound(scores, b, confidence=0.95, delta=1e-5).epsilon <= ceiling
    # more canaries can show more; a larger delta shows less
    assert max_epsilon_lower_bound(4 * m, confidence=0.95, delta=1e-5) > ceiling
    assert max_epsilon_lower_bound(m, confidence=0.95, delta=1e-3) < ceiling


def test_guesses_rank_scores_and_break_ties_by_index():
    scores = np.array([0.0, 0.0, 0.0, 5.0, -1.0])
    membership = np.array([True, False, True, True, False])
    # top 2: index 3 (5.0), then the last of the tied zeros in stable order (index 2)
    assert count_correct(scores, membership, k_plus=2, k_minus=0) == 2
    # bottom 2: index 4 (-1.0), then index 0 (first tied zero): one right
    assert count_correct(scores, membership, k_plus=0, k_minus=2) == 1
    # all five: bottom [4, 0] (one right), top [1, 2, 3] (two right)
    assert count_correct(scores, membership, k_plus=3, k_minus=2) == 3


def test_default_grid_is_fixed_and_small():
    grid = default_guess_grid(2000)
    assert len(grid) == 18 and len(set(grid)) == 18
    assert (2000, 0) in grid and (1000, 1000) in grid
    assert all(kp + km <= 2000 for kp, km in grid)


def test_privacy_parameters_have_no_defaults_and_are_checked():
    with pytest.raises(TypeError):
        epsilon_lower_bound([1.0, 0.0], [True, False], delta=1e-5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        epsilon_lower_bound([1.0, 0.0], [True, False], confidence=0.95)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        epsilon_lower_bound([1.0, 0.0], [True, False], 0.95, 1e-5)  # type: ignore[misc]
    for bad in (1.0, 0.2, float("nan"), True):
        with pytest.raises(InvalidPrivacyParameter):
            epsilon_lower_bound([1.0, 0.0], [True, False], confidence=bad, delta=1e-5)
    with pytest.raises(InvalidPrivacyParameter):
        epsilon_lower_bound([1.0, 0.0], [True, False], confidence=0.95, delta=-1e-5)
    with pytest.raises(CanaryScoreError):
        epsilon_lower_bound([1.0, 0.0], [True], confidence=0.95, delta=1e-5)
    with pytest.raises(CanaryScoreError):
        epsilon_lower_bound([1.0, float("inf")], [True, False], confidence=0.95, delta=1e-5)
    with pytest.raises(CanaryScoreError):
        epsilon_lower_bound_from_counts(m=10, guesses=5, correct=6, confidence=0.95, delta=0)
    assert issubclass(CanaryScoreError, PrivacyError)


# ---------------------------------------------------------------------------------------
# The audited partner.

CANARIES = 2000
USER_CANARY_ROWS = 8  # a user-level canary is a user with the most rows one user may bring
MODEL = model_config("lr")


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EncodedData]:
    from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation

    paths, _ = generate_federation(
        tmp_path_factory.mktemp("audit-logs"),
        partners=(PartnerProfile("shop-a", 1500, "parquet", 0, 0.7, -1.2),),
        platform_test_rows=10,
    )
    data = paths["shop-a"]
    return data, read_partner_log(data, load_spec(builtin_spec_path("demo")))


def _config(
    data: Path, root: Path, *, implementation: str, epsilon: float = 1.0, unit: str = "example"
) -> PartnerConfig:
    return PartnerConfig(
        partner_id="shop-a",
        data=data,
        spec=builtin_spec_path("demo"),
        state_dir=root / "state",
        signing_key=root / "never-used.key",
        ledger=root / "ledger.jsonl",
        privacy=PrivacySettings(
            epsilon=epsilon,
            delta=1e-5,
            planned_rounds=2,
            sample_rate=0.25,
            max_grad_norm=0.1,
            dp_implementation=implementation,
            unit=unit,
            max_rows_per_user=USER_CANARY_ROWS,
        ),
        training=TrainingSettings(batch_size=625, local_epochs=2, learning_rate=0.02),
    )


def _audit(
    partner,
    tmp_path: Path,
    implementation: str,
    *,
    seed: int,
    epsilon: float = 1.0,
    training_seed: int | None = 0,
    unit: str = "example",
) -> EmpiricalAuditResult:
    data, rows = partner
    config = _config(data, tmp_path, implementation=implementation, epsilon=epsilon, unit=unit)
    return run_empirical_audit(
        config,
        MODEL,
        canaries=CANARIES,
        seed=seed,
        rows=rows,
        training_seed=None if training_seed is None else training_seed + seed,
    )


@pytest.mark.parametrize("implementation", sorted(BROKEN))
def test_broken_dp_sgd_is_caught(partner, tmp_path, implementation, caplog):
    caplog.set_level(logging.INFO, logger="fedctr.clients.canary_audit.run")
    result = _audit(partner, tmp_path, implementation, seed=0)
    assert result.implementation == implementation  # it ran, and was ledgered as such
    assert result.claimed_epsilon == pytest.approx(1.0, abs=0.02)
    assert result.lower_bound > result.claimed_epsilon
    assert result.lower_bound > 1.5  # margin: measured 2.0-4.2 over seeds
    assert not result.passed
    assert "claim refuted" in caplog.text


def test_sigma0_is_caught_with_fresh_csprng_keys(partner, tmp_path):
    """The production setting: the node draws its noise and batches from fresh keys."""
    result = _audit(partner, tmp_path, "broken-sigma0", seed=5, training_seed=None)
    assert not result.passed and result.lower_bound > 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_dp_sgd_passes(partner, tmp_path, seed):
    result = _audit(partner, tmp_path, "fedctr-sparse", seed=seed)
    assert result.passed
    assert result.lower_bound <= result.claimed_epsilon
    assert result.lower_bound < 0.5  # measured 0-0.15: far below the claim of 1


def test_user_level_dp_sgd_passes_with_canary_users(partner, tmp_path):
    """Canaries are users with USER_CANARY_ROWS rows each; per-user clipping holds the
    user-level claim."""
    result = _audit(partner, tmp_path, "fedctr-sparse", seed=0, unit="user")
    assert (result.unit_of_privacy, result.rows_per_canary) == ("user", USER_CANARY_ROWS)
    assert result.passed and result.lower_bound < 0.5


def test_per_row_clipping_under_a_user_level_claim_is_refuted(partner, tmp_path):
    """The user-level bug the ledger cannot show: users sampled, rows clipped one by one,
    so a user with r rows moves the model r times further than its epsilon allows."""
    result = _audit(partner, tmp_path, "broken-per-row-clipping", seed=0, unit="user")
    assert result.claimed_epsilon == pytest.approx(1.0, abs=0.02)
    assert not result.passed
    assert result.lower_bound > 1.3  # margin: measured 1.8-2.1 over seeds 0-2


@pytest.mark.slow
@pytest.mark.parametrize("epsilon", [1.0, 3.0, 8.0])
def test_correct_dp_sgd_passes_over_seeds_and_epsilons(partner, tmp_path, epsilon):
    for implementation, seeds in (("fedctr-sparse", (10, 11)), ("opacus-ghost", (20,))):
        for seed in seeds:
            result = _audit(
                partner,
                tmp_path / f"{implementation}-{seed}",
                implementation,
                seed=seed,
                epsilon=epsilon,
            )
            assert result.passed, result.summary()
            assert result.claimed_epsilon == pytest.approx(epsilon, rel=0.02)


def test_result_records_the_mechanism_and_every_canary(partner, tmp_path):
    data, rows = partner
    config = _config(data, tmp_path, implementation="fedctr-sparse")
    result = run_empirical_audit(
        config,
        MODEL,
        canaries=200,
        seed=3,
        rows=rows,
        implementation="opacus-ghost",
        training_seed=1,
    )
    assert result.implementation == "opacus-ghost"  # the override, not the config's
    assert (result.model, result.unit_of_privacy, result.accountant) == ("lr", "example", "rdp")
    assert (result.rounds, result.steps_per_round) == (2, 8)  # planned_rounds, ceil(2/0.25)
    assert (result.sample_rate, result.max_grad_norm, result.delta) == (0.25, 0.1, 1e-5)
    assert result.noise_multiplier > 1 and len(result.noise_multipliers) == 2
    assert result.confidence == 0.95 and result.canaries == 200
    assert len(result.scores) == len(result.membership) == 200
    assert sum(result.membership) == result.included
    assert 0 <= result.correct <= result.guesses == result.k_plus + result.k_minus <= 200
    view = json.loads(json.dumps(result.to_dict()))
    assert view["passed"] is result.passed and view["lower_bound"] == result.lower_bound
    assert len(view["scores"]) == 200
    # the partner's own state, key and ledger are never touched
    assert not (tmp_path / "state").exists() and not (tmp_path / "ledger.jsonl").exists()


def test_one_round_audit(partner, tmp_path):
    data, rows = partner
    config = _config(data, tmp_path, implementation="broken-sigma0")
    result = run_empirical_audit(
        config, MODEL, canaries=CANARIES, seed=0, rows=rows, rounds=1, training_seed=0
    )
    assert result.rounds == 1 and not result.passed
    assert result.claimed_epsilon < 1.0  # one of two planned rounds spent


def test_canaries_sit_on_buckets_no_real_row_uses(partner):
    _, rows = partner
    spec = load_spec(builtin_spec_path("demo"))
    canaries = make_canaries(spec, rows, m=CANARIES, rng=np.random.default_rng(0))
    assert canaries.own_fields == tuple(range(spec.num_categorical))
    x = canaries.rows.x_cat
    for j in canaries.own_fields:
        assert len(np.unique(x[:, j])) == CANARIES  # one bucket per canary
        assert not np.isin(x[:, j], rows.x_cat[:, j]).any()  # never a real row's
        assert (x[:, j] >= 1).all()  # never "missing"
    assert (canaries.rows.y == 1).all() and not canaries.rows.x_num.any()
    assert 0.45 < canaries.included.mean() < 0.55
    with pytest.raises(EmpiricalAuditError, match="unused"):
        make_canaries(spec, rows, m=4095, rng=np.random.default_rng(0))


def test_audit_refuses_what_it_cannot_audit(partner, tmp_path):
    data, rows = partner
    config = _config(data, tmp_path, implementation="fedctr-sparse")
    plain = replace(config, privacy=replace(config.privacy, enabled=False))
    with pytest.raises(EmpiricalAuditError, match="without DP"):
        run_empirical_audit(plain, MODEL, canaries=100, seed=0, rows=rows)
    with pytest.raises(EmpiricalAuditError, match="planned_rounds"):
        run_empirical_audit(config, MODEL, canaries=100, seed=0, rows=rows, rounds=3)
    with pytest.raises(EmpiricalAuditError, match="at least 2"):
        run_empirical_audit(config, MODEL, canaries=1, seed=0, rows=rows)


# ---------------------------------------------------------------------------------------
# The command.


def _partner_toml(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "partner.toml"
    path.write_text(
        f"""
[partner]
id = "shop-a"
data = "{data}"
spec = "{builtin_spec_path("demo")}"

[privacy]
epsilon = 1.0
delta = 1e-5
planned_rounds = 2
sample_rate = 0.25
max_grad_norm = 0.1

[training]
batch_size = 625
local_epochs = 2
""",
        encoding="utf-8",
    )
    return path


def test_cli_refutes_a_broken_partner_and_writes_json(partner, tmp_path, capsys):
    from fedctr.clients.canary_audit.cli import EXIT_REFUTED, main

    data, _ = partner
    toml = _partner_toml(tmp_path, data)
    out = tmp_path / "reports" / "empirical.json"
    argv = ["--partner", str(toml), "--model", "lr", "--canaries", "2000", "--seed", "4"]
    code = main([*argv, "--implementation", "broken-sigma0", "--out", str(out)])
    assert code == EXIT_REFUTED
    assert "claim refuted" in capsys.readouterr().out
    view = json.loads(out.read_text())
    assert view["passed"] is False and view["seed"] == 4
    assert view["implementation"] == "broken-sigma0" and view["lower_bound"] > 1
    assert not (tmp_path / "state").exists()  # the partner's state dir stays untouched


def test_cli_passes_a_correct_partner_and_rejects_bad_input(partner, tmp_path, capsys):
    from fedctr.clients.canary_audit.cli import EXIT_PASS, EXIT_USAGE, main

    data, _ = partner
    toml = _partner_toml(tmp_path, data)
    assert main(["--partner", str(toml), "--model", "lr", "--canaries", "300"]) == EXIT_PASS
    assert "passed" in capsys.readouterr().out
    assert main(["--partner", str(tmp_path / "missing.toml")]) == EXIT_USAGE
    assert main(["--partner", str(toml), "--model", "lr", "--canaries", "5000"]) == EXIT_USAGE
    with pytest.raises(SystemExit):
        main(["--partner", str(toml), "--canaries", "1"])
