"""Bucket selection (DP-AdaFEST): embedding rows outside the DP-selected set get neither
gradient nor noise, each unit's contribution to the released counts has L2 norm <= 1,
and the two Gaussians of a step are accounted as one, everywhere the same way."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from opacus import PrivacyEngine
from opacus.accountants import RDPAccountant
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedctr.privacy.audit.recompute import independent_epsilons, step_noise_multiplier
from fedctr.privacy.budget import (
    BucketSelection,
    DPSGDRound,
    composed_noise_multiplier,
    split_noise_multiplier,
)
from fedctr.privacy.dpsgd import SeamArgumentError, get_implementation
from fedctr.privacy.dpsgd.bucket_selection import noisy_counts, select_rows, touched_rows
from fedctr.privacy.ledger.bodies import mechanism_dict, parse_mechanism
from fedctr.privacy.randomness import SecureRandom
from fedctr.privacy.wire import ContractViolation

ROWS, DIM, FIELDS = 50, 4, 3


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(ROWS, DIM, padding_idx=0)
        self.out = nn.Linear(FIELDS * DIM, 1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(idx).reshape(len(idx), -1)).squeeze(1)


def _step(selection: BucketSelection | None, idx: torch.Tensor, implementation="fedctr-sparse"):
    model = _Tiny()
    y = torch.ones(len(idx))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant="rdp")
    private = get_implementation(implementation).make_private(
        engine,
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        data_loader=DataLoader(TensorDataset(idx, y), batch_size=len(y)),
        sample_rate=1.0,
        steps=1,
        expected_batch_size=len(y),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        rng=SecureRandom.from_key(b"s" * 32),
        selection=selection,
    )
    for batch_idx, batch_y in private.data_loader:
        private.optimizer.zero_grad()
        private.criterion(private.module(batch_idx), batch_y).backward()
        private.optimizer.step()
    return model, private.optimizer, engine


def _hot_and_cold(n: int = 200) -> torch.Tensor:
    """Every row looks up rows 1, 2, 3: those are hot; rows 4.. are never touched."""
    return torch.tensor([[1, 2, 3]] * n)


def test_rows_outside_the_selection_get_neither_gradient_nor_noise() -> None:
    selection = BucketSelection(noise_multiplier=1.0, threshold=20.0)
    model, optimizer, _ = _step(selection, _hot_and_cold())

    grad = model.emb.weight.grad
    selected = optimizer.selected_rows[model.emb.weight]
    assert selected[1:4].all() and selected.sum() == 3  # 200/sqrt(3) >> 20; cold rows: N(0,1)
    assert torch.count_nonzero(grad[~selected]) == 0
    assert (grad[selected].abs() > 0).all()
    assert torch.count_nonzero(model.out.weight.grad) == model.out.weight.numel()  # dense: noised


def test_without_selection_every_row_is_noised() -> None:
    model, _, _ = _step(None, _hot_and_cold())
    assert torch.count_nonzero(model.emb.weight.grad[1:]) == (ROWS - 1) * DIM


def test_each_units_contribution_to_the_counts_has_norm_at_most_one() -> None:
    """Noise 0 shows the raw counts: a unit touching n distinct rows adds 1/sqrt(n) to
    each (repeats and padding not counted), so removing it moves the counts by <= 1."""
    idx = torch.tensor([[1, 1, 2, 0], [3, 0, 0, 0], [1, 4, 5, 6]])
    touched = touched_rows(idx, padding_idx=0)
    assert sorted(zip(touched.unit.tolist(), touched.row.tolist(), strict=True)) == [
        (0, 1), (0, 2), (1, 3), (2, 1), (2, 4), (2, 5), (2, 6),
    ]  # fmt: skip
    counts = {}
    for threshold in (0.0, 0.6, 0.8):
        (mask,) = select_rows(
            [(8, touched, 0)], units=3, noise_multiplier=0.0, threshold=threshold,
            rng=SecureRandom.from_key(b"k" * 32),
        )  # fmt: skip
        counts[threshold] = mask.nonzero().squeeze(1).tolist()
    # row 1: 1/sqrt(2) + 1/sqrt(4) = 1.207; 2: 0.707; 3: 1.0; 4-6: 0.5
    assert counts[0.0] == [1, 2, 3, 4, 5, 6]
    assert counts[0.6] == [1, 2, 3]
    assert counts[0.8] == [1, 3]
    rng = SecureRandom.from_key(b"k" * 32)
    (full,) = noisy_counts([(8, touched)], units=3, noise_multiplier=0.0, rng=rng)
    for unit in range(3):  # the neighbour without that unit
        others = idx[[u for u in range(3) if u != unit]]
        (without,) = noisy_counts(
            [(8, touched_rows(others, padding_idx=0))], units=2, noise_multiplier=0.0, rng=rng
        )
        assert math.isclose(float(torch.linalg.vector_norm(full - without)), 1.0, rel_tol=1e-6)


def test_the_step_is_accounted_at_the_composed_noise_multiplier() -> None:
    """Opacus' accountant sees (sigma_grad^-2 + sigma_select^-2)^(-1/2), the same the
    ledger's mechanism states and the audit's own formula recomputes."""
    selection = BucketSelection(noise_multiplier=3.0, threshold=6.0)
    _, _, engine = _step(selection, _hot_and_cold())
    composed = composed_noise_multiplier(1.0, 3.0)
    assert engine.accountant.history == [(pytest.approx(composed), 1.0, 1)]
    release = DPSGDRound(
        noise_multiplier=1.0, sample_rate=0.01, steps=500, max_grad_norm=1.0, selection=selection
    )
    assert release.accounted_noise_multiplier == pytest.approx(composed)
    assert step_noise_multiplier(release) == pytest.approx(composed, rel=1e-12)
    check = RDPAccountant()
    check.history = [(composed, 0.01, 500)]
    (independent,) = independent_epsilons([(release, 1e-5)])
    assert independent.rdp == pytest.approx(check.get_epsilon(1e-5), rel=0.01)
    plain = DPSGDRound(noise_multiplier=1.0, sample_rate=0.01, steps=500, max_grad_norm=1.0)
    (without,) = independent_epsilons([(plain, 1e-5)])
    assert independent.rdp > without.rdp  # the counts are a release too


def test_a_calibrated_pair_composes_back_to_the_calibrated_noise() -> None:
    gradient, select = split_noise_multiplier(0.8, 3.0)
    assert select == pytest.approx(3 * gradient)
    assert composed_noise_multiplier(gradient, select) == pytest.approx(0.8, rel=1e-12)
    assert gradient > 0.8  # the gradient pays a little for the selection's release


def test_selection_travels_through_the_ledger_and_the_contract() -> None:
    release = DPSGDRound(
        noise_multiplier=1.1,
        sample_rate=0.05,
        steps=20,
        max_grad_norm=5.0,
        selection=BucketSelection(noise_multiplier=3.3, threshold=6.6),
    )
    assert parse_mechanism(mechanism_dict(release)) == release
    plain = DPSGDRound(noise_multiplier=1.1, sample_rate=0.05, steps=20, max_grad_norm=5.0)
    assert mechanism_dict(plain)["selection"] is None

    from fedctr.privacy.wire import TrainReply

    records = _reply(release).to_records()
    assert TrainReply.from_records(records).release == release
    assert records["report"]["bucket-selection"] == "dp-adafest"
    records = _reply(plain).to_records()
    records["report"]["selection-noise-multiplier"] = 2.0  # says 'none', carries a noise
    with pytest.raises(ContractViolation, match="no bucket selection"):
        TrainReply.from_records(records)


def test_per_row_noising_implementations_refuse_selection() -> None:
    with pytest.raises(SeamArgumentError, match="bucket selection"):
        _step(BucketSelection(noise_multiplier=1.0, threshold=1.0), _hot_and_cold(), "opacus-ghost")


def _reply(release: DPSGDRound):
    from fedctr.privacy.budget import PrivacyBudget
    from fedctr.privacy.wire import TrainReply

    return TrainReply(
        partner_id="shop-a",
        release=release,
        accountant="rdp",
        dp_implementation="fedctr-sparse",
        epsilon=1.0,
        delta=1e-5,
        budget=PrivacyBudget(epsilon=8.0, delta=1e-5),
        aggregation_weight=1.0,
        base_model_hash="0" * 64,
        update_hash="1" * 64,
        ledger_entry="{}",
    )


def test_a_partner_with_bucket_selection_spends_exactly_its_budget(tmp_path, synthetic_logs):
    """Calibration covers the pair: planned rounds end at the budget under the composed
    noise; the ledger and the reply carry both noises; the audit recomputes the same."""
    from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
    from fedctr.clients.node import PartnerNode
    from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
    from fedctr.privacy.signing import generate_signing_key, save_private_key

    logs, _ = synthetic_logs
    key = save_private_key(generate_signing_key(), tmp_path / "p.key")
    config = PartnerConfig(
        partner_id="shop-a",
        data=logs["shop-a"],
        spec=builtin_spec_path("demo"),
        state_dir=tmp_path / "state",
        signing_key=key,
        ledger=tmp_path / "ledger.jsonl",
        privacy=PrivacySettings(
            epsilon=3.0, delta=1e-5, planned_rounds=1, sample_rate=0.1, bucket_selection=True
        ),
        training=TrainingSettings(batch_size=64),
    )
    spec = load_spec(config.spec)
    model = model_config("fm")
    torch.manual_seed(0)
    _, reply = PartnerNode(config).train(
        build_model(spec, model).state_dict(),
        model_config=model,
        spec_hash=spec.spec_hash,
        run_id="r",
        server_round=1,
        seed=1,
    )
    release = reply.release
    assert release.selection is not None
    assert release.selection.noise_multiplier == pytest.approx(3 * release.noise_multiplier)
    assert release.selection.threshold == pytest.approx(2 * release.selection.noise_multiplier)
    assert 3.0 - 0.02 <= reply.epsilon <= 3.0
    (independent,) = independent_epsilons([(release, 1e-5)])
    assert independent.rdp == pytest.approx(reply.epsilon, rel=0.01)
