"""User-level DP (issue 14): the unit of privacy is a person, not a row.

What these tests pin down: fedctr-sparse clips each *user's* summed gradient (checked
against autograd within 1e-5, with padding and repeated buckets inside a user's rows);
removing all of one user's rows moves the step's clipped sum by at most C, the
sensitivity the accountant assumes at the user sampling rate (and per-row clipping,
the example-level relation, would not); the epsilon a user-level release states is
the accountant's at that rate with no group-privacy multiplier; and the unit is
refused where it cannot hold.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedctr.privacy.dpsgd import SeamArgumentError, UserSampling, get_implementation
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.randomness import SecureRandom
from fedctr.privacy.unit import UnitOfPrivacy, group_privacy

BUCKETS, DIM, FIELDS = 12, 3, 4


class _TinyCTR(nn.Module):
    """Embedding (with a padding row) -> linear: the shapes of fedctr's CTR models."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(BUCKETS, DIM, padding_idx=0)
        self.out = nn.Linear(FIELDS * DIM, 1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(idx).reshape(len(idx), -1)).squeeze(1)


def _engine() -> PrivacyEngine:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        return PrivacyEngine(accountant="rdp")


def _one_step(
    model: nn.Module,
    idx: torch.Tensor,
    y: torch.Tensor,
    users: torch.Tensor | None,
    *,
    max_rows: int = 8,
    clip: float = 1.0,
    expected_batch: int = 1,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One noiseless (sigma 0) step at rate 1 over every row: (gradients, clip norms)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = DataLoader(TensorDataset(idx, y), batch_size=len(y))
    private = get_implementation("fedctr-sparse").make_private(
        _engine(),
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        sample_rate=1.0,
        steps=1,
        expected_batch_size=expected_batch,
        noise_multiplier=0.0,
        max_grad_norm=clip,
        rng=SecureRandom.from_key(b"k" * 32),
        user_sampling=None if users is None else UserSampling(users, max_rows=max_rows),
    )
    for batch_idx, batch_y in private.data_loader:
        private.optimizer.zero_grad()
        private.criterion(private.module(batch_idx), batch_y).backward()
        private.optimizer.step()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return grads, private.optimizer.per_sample_norms


def _reference(model: nn.Module, idx, y, users) -> tuple[dict[int, float], dict[int, list]]:
    """Per user: the norm of the gradient of its summed loss, and that gradient (autograd)."""
    norms, grads = {}, {}
    for key in dict.fromkeys(users.tolist()):
        rows = users == key
        model.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(idx[rows]), y[rows], reduction="sum"
        )
        loss.backward()
        g = [p.grad.detach().clone() for p in model.parameters()]
        grads[key] = g
        norms[key] = float(torch.linalg.vector_norm(torch.cat([t.reshape(-1) for t in g])))
    return norms, grads


def _batch(seed: int, n: int = 19):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, FIELDS), generator=g)  # few buckets: repeats and padding
    idx[0] = torch.tensor([0, 0, 0, 0])  # a row that is all padding
    idx[1] = torch.tensor([3, 3, 3, 0])  # one bucket three times in one row
    y = torch.randint(0, 2, (n,), generator=g).float()
    users = torch.randint(500, 506, (n,), generator=g)
    users[:2] = 500  # the padded row and the repeated-bucket row belong to one user
    return idx, y, users


@pytest.mark.parametrize("seed", range(4))
def test_fedctr_sparse_clips_each_users_summed_gradient(seed: int) -> None:
    """Through the real seam: the norms it clips are the per-user autograd norms (1e-5),
    and the step's gradient is sum_u min(1, C/|g_u|) g_u over the declared batch size."""
    idx, y, users = _batch(seed)
    clip = 0.5
    model = _TinyCTR(seed)
    reference_model = _TinyCTR(seed)
    norms_ref, grads_ref = _reference(reference_model, idx, y, users)

    grads, norms = _one_step(model, idx, y, users, clip=clip, expected_batch=3)

    order = list(dict.fromkeys(users.tolist()))  # UserGroups numbers users by first row
    expected = torch.tensor([norms_ref[k] for k in order])
    assert torch.allclose(norms, expected, rtol=1e-5, atol=1e-6)
    assert (expected > clip).any(), "clipping must bind for the test to mean anything"
    names = [n for n, _ in model.named_parameters()]
    for j, name in enumerate(names):
        want = sum(min(1.0, clip / (norms_ref[k] + 1e-6)) * grads_ref[k][j] for k in order) / 3
        assert torch.allclose(grads[name], want, rtol=1e-4, atol=1e-6), name


def test_removing_all_of_one_users_rows_moves_the_step_by_at_most_c() -> None:
    """The neighbour relation the accountant uses at the user rate: one user out, every
    other user's contribution unchanged, so the clipped sum moves by <= C, however many
    rows the user had. Clipping per row (the example-level relation) lets the same
    removal move it by up to rows x C, which is why the unit matters."""
    torch.manual_seed(0)
    n_heavy, clip = 8, 1.0
    idx = torch.randint(1, BUCKETS, (20, FIELDS))
    idx[:n_heavy] = idx[0]  # the heavy user's rows all push the same way
    y = torch.zeros(20)
    y[:n_heavy] = 1.0
    users = torch.cat([torch.full((n_heavy,), 7), torch.arange(100, 112)])
    without = users != 7

    def clipped_sum(rows: torch.Tensor, unit_users: torch.Tensor | None) -> torch.Tensor:
        model = _TinyCTR(3)
        grads, _ = _one_step(model, idx[rows], y[rows], unit_users, clip=clip)
        return torch.cat([g.reshape(-1) for g in grads.values()])

    all_rows = torch.ones(20, dtype=torch.bool)
    user_level = clipped_sum(all_rows, users) - clipped_sum(without, users[without])
    row_level = clipped_sum(all_rows, None) - clipped_sum(without, None)

    assert float(torch.linalg.vector_norm(user_level)) <= clip * (1 + 1e-5)
    assert float(torch.linalg.vector_norm(row_level)) > 2 * clip


def test_a_user_over_the_declared_row_bound_never_reaches_the_clipper() -> None:
    """The sampler keeps at most max_rows rows of a user, so a batch never breaks the bound."""
    idx, y, users = _batch(0, n=30)
    users[:] = 42  # one user with 30 rows, bound 4
    model = _TinyCTR(0)
    _, norms = _one_step(model, idx, y, users, max_rows=4)
    assert norms.shape == (1,)


def test_per_row_implementations_refuse_user_sampling() -> None:
    """Opacus' own modes clip per row: asked for user-level DP they refuse before wrapping."""
    idx, y, users = _batch(0)
    model = _TinyCTR(0)
    for name in ("opacus-hooks", "opacus-ghost"):
        with pytest.raises(SeamArgumentError, match="user-level DP"):
            get_implementation(name).make_private(
                _engine(),
                module=model,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                data_loader=DataLoader(TensorDataset(idx, y), batch_size=4),
                sample_rate=0.5,
                steps=1,
                expected_batch_size=4,
                noise_multiplier=1.0,
                max_grad_norm=1.0,
                rng=SecureRandom.from_key(b"k" * 32),
                user_sampling=UserSampling(users, max_rows=4),
            )


def test_group_privacy_is_what_example_level_dp_gives_a_user() -> None:
    """k rows under (eps, delta) per row: (k eps, k e^{(k-1) eps} delta), for comparison."""
    eps, delta = group_privacy(8.0, 1e-5, 50)
    assert eps == 400.0 and delta == 1.0  # the example: meaningless for a heavy user
    assert group_privacy(1.0, 1e-6, 1) == (1.0, 1e-6)
    assert group_privacy(0.5, 1e-6, 3) == pytest.approx((1.5, 3 * math.exp(1.0) * 1e-6))


def test_the_unit_is_a_closed_value() -> None:
    assert UnitOfPrivacy.user(8).neighbour_relation.startswith("add/remove all rows of one user")
    assert "one row" in UnitOfPrivacy.example().neighbour_relation
    with pytest.raises(InvalidPrivacyParameter):
        UnitOfPrivacy("household", 1)
    with pytest.raises(InvalidPrivacyParameter):
        UnitOfPrivacy("example", 3)
    with pytest.raises(InvalidPrivacyParameter):
        UnitOfPrivacy.user(0)


class _Deep(_TinyCTR):
    """Embedding -> linear -> linear: a hidden activation can overflow to inf."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.out = nn.Linear(FIELDS * DIM, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.out(self.emb(idx).reshape(len(idx), -1))).squeeze(1)


@pytest.mark.parametrize("users_on", [False, True])
def test_a_unit_whose_gradient_overflows_is_dropped_not_spread_as_nan(users_on: bool) -> None:
    """Weights that make one example's hidden activation overflow to inf (a platform's
    crafted, finite weights) must not turn what it touched into NaN in the update: that
    unit is left out of the sum and every value stays finite."""
    idx, y, users = _batch(1)
    model = _Deep(1)
    with torch.no_grad():
        model.emb.weight[5] = 3e38  # finite; the next layer's sum of them is not
        model.out.weight.fill_(1.0)
    idx[4] = torch.tensor([5, 5, 5, 1])
    grads, norms = _one_step(model, idx, y, users if users_on else None, clip=1.0)

    assert not bool(torch.isfinite(norms).all())  # the overflow happened
    for name, g in grads.items():
        assert bool(torch.isfinite(g).all()), name


def test_the_node_refuses_non_finite_weights_from_the_platform(tmp_path, synthetic_logs) -> None:
    from fedctr.clients.config import PartnerConfig, PrivacySettings
    from fedctr.clients.errors import UnusableWeightsError
    from fedctr.clients.node import PartnerNode
    from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
    from fedctr.privacy.signing import generate_signing_key, save_private_key

    logs, _ = synthetic_logs
    key = save_private_key(generate_signing_key(), tmp_path / "k.key")
    node = PartnerNode(
        PartnerConfig(
            partner_id="shop-a",
            data=logs["shop-a"],
            spec=builtin_spec_path("demo"),
            state_dir=tmp_path / "state",
            signing_key=key,
            ledger=tmp_path / "ledger.jsonl",
            privacy=PrivacySettings(),
        )
    )
    spec, model = load_spec(builtin_spec_path("demo")), model_config("lr")
    weights = build_model(spec, model).state_dict()
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first].clone().fill_(float("nan"))
    with pytest.raises(UnusableWeightsError, match="non-finite"):
        node.train(
            weights, model_config=model, spec_hash=spec.spec_hash, run_id="r", server_round=1
        )
    assert not (tmp_path / "ledger.jsonl").exists() or not (tmp_path / "ledger.jsonl").read_text()
