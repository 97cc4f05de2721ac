"""Per-user gradient norms (user-level DP-SGD, issue 14's building block): a user's
clipped quantity is the sum of its rows' gradients, and the norms computed through
:class:`UserGroups` with the per-example kernels equal a direct autograd reference
within 1e-5, also when a user's rows hit padding or the same bucket more than once."""

from __future__ import annotations

import pytest
import torch

from fedctr.privacy.dpsgd.sparse_norms import embedding_norm_sq, linear_norm_sq
from fedctr.privacy.dpsgd.user_groups import UserGroups
from fedctr.privacy.errors import InvalidPrivacyParameter

BUCKETS, DIM, FIELDS = 12, 3, 4


def _model(seed: int) -> tuple[torch.nn.Embedding, torch.nn.Linear]:
    torch.manual_seed(seed)
    return torch.nn.Embedding(BUCKETS, DIM, padding_idx=0), torch.nn.Linear(FIELDS * DIM, 1)


def _losses(emb, lin, idx, y):
    out = emb(idx)
    logits = lin(out.reshape(len(idx), -1)).squeeze(1)
    return (
        out,
        logits,
        torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none"),
    )


def _reference(emb, lin, idx, y, keys) -> dict[int, float]:
    """Norm of the gradient of each user's summed loss, by autograd (one user at a time)."""
    norms = {}
    for key in dict.fromkeys(keys.tolist()):
        rows = keys == key
        emb.zero_grad(), lin.zero_grad()
        _, _, loss = _losses(emb, lin, idx[rows], y[rows])
        loss.sum().backward()
        grads = [p.grad.reshape(-1) for p in (*emb.parameters(), *lin.parameters())]
        norms[key] = float(torch.linalg.vector_norm(torch.cat(grads)))
    return norms


@pytest.mark.parametrize("seed", range(5))
def test_per_user_norms_equal_a_direct_reference(seed: int) -> None:
    emb, lin = _model(seed)
    g = torch.Generator().manual_seed(seed)
    n = 17
    idx = torch.randint(0, 4, (n, FIELDS), generator=g)  # few buckets: many repeats and pads
    idx[0] = torch.tensor([0, 0, 0, 0])  # a row that is all padding
    idx[1] = torch.tensor([3, 3, 3, 0])  # one bucket three times in one row
    y = torch.randint(0, 2, (n,), generator=g).float()
    keys = torch.randint(100, 106, (n,), generator=g)
    keys[:2] = 100  # the padded row and the repeated row belong to one user
    counts = torch.bincount(keys - 100)
    groups = UserGroups.of(keys, max_rows=int(counts.max()))

    out, logits, loss = _losses(emb, lin, idx, y)
    out.retain_grad(), logits.retain_grad()
    loss.sum().backward()
    emb_back = out.grad * (idx != 0).unsqueeze(2)  # padding positions carry no gradient
    acts = out.detach().reshape(n, 1, -1)
    lin_back = logits.grad.reshape(n, 1, 1)

    norm_sq = embedding_norm_sq(groups.gather(idx), groups.gather(emb_back))
    norm_sq += linear_norm_sq(groups.gather(acts), groups.gather(lin_back), weight=True, bias=True)
    reference = _reference(emb, lin, idx, y, keys)
    order = list(reference)  # users in order of first appearance, as UserGroups numbers them
    expected = torch.tensor([reference[k] for k in order])
    assert torch.allclose(norm_sq.sqrt(), expected, rtol=1e-5, atol=1e-7)


def test_rows_land_in_their_users_slots_and_padding_is_zero() -> None:
    groups = UserGroups.of(torch.tensor([70, 5, 70, 9, 5, 70]), max_rows=3)
    assert groups.users == 3
    assert groups.user.tolist() == [0, 1, 0, 2, 1, 0]
    assert groups.slot.tolist() == [0, 0, 1, 0, 1, 2]
    laid_out = groups.gather(torch.arange(1.0, 7.0).view(6, 1, 1)).squeeze(-1)
    assert laid_out.tolist() == [[1.0, 3.0, 6.0], [2.0, 5.0, 0.0], [4.0, 0.0, 0.0]]
    assert groups.spread(torch.tensor([0.5, 1.0, 0.25])).tolist() == [0.5, 1, 0.5, 0.25, 1, 0.5]


def test_a_user_over_the_declared_bound_is_refused() -> None:
    with pytest.raises(InvalidPrivacyParameter, match="above the declared bound of 2"):
        UserGroups.of(torch.tensor([1, 1, 1, 2]), max_rows=2)
    with pytest.raises(InvalidPrivacyParameter):
        UserGroups.of(torch.tensor([1, 2]), max_rows=0)


def test_clipping_per_user_scales_each_users_summed_gradient() -> None:
    """The clipped sum built from per-row coefficients (each row takes its user's factor)
    equals sum_u min(1, C / |g_u|) g_u computed user by user: a user's rows are clipped
    together, never one by one."""
    from fedctr.privacy.dpsgd.sparse_norms import clip_factors, linear_clipped_sum_

    emb, lin = _model(7)
    g = torch.Generator().manual_seed(7)
    n, clip = 11, 0.05
    idx = torch.randint(1, BUCKETS, (n, FIELDS), generator=g)
    y = torch.randint(0, 2, (n,), generator=g).float()
    keys = torch.tensor([1, 1, 1, 2, 2, 3, 4, 4, 4, 4, 5])
    groups = UserGroups.of(keys, max_rows=4)
    out, logits, loss = _losses(emb, lin, idx, y)
    logits.retain_grad()
    loss.sum().backward()
    acts = out.detach().reshape(n, 1, -1)
    back = logits.grad.reshape(n, 1, 1)
    norms = linear_norm_sq(groups.gather(acts), groups.gather(back), weight=True, bias=True)
    coeff = groups.spread(clip_factors(norms.sqrt(), clip))
    weight, bias = torch.zeros_like(lin.weight), torch.zeros_like(lin.bias)
    linear_clipped_sum_(weight, bias, acts, back, coeff)

    expected_w, expected_b = torch.zeros_like(weight), torch.zeros_like(bias)
    for key in dict.fromkeys(keys.tolist()):
        rows = keys == key
        gw = back[rows, 0].t() @ acts[rows, 0]
        gb = back[rows, 0].sum(0)
        norm = torch.sqrt(gw.pow(2).sum() + gb.pow(2).sum())
        factor = min(1.0, clip / (float(norm) + 1e-6))
        expected_w += factor * gw
        expected_b += factor * gb
    assert torch.allclose(weight, expected_w, rtol=1e-5, atol=1e-8)
    assert torch.allclose(bias, expected_b, rtol=1e-5, atol=1e-8)


def test_users_are_laid_out_by_width_class_with_under_2x_padding() -> None:
    """One-row users keep the one-position layout; each class pads to at most twice the
    rows its users have, and the classes partition the batch's users and rows."""
    keys = torch.tensor([7, 3, 3, 9, 9, 9, 9, 9, 4, 3, 1])  # rows per user: 7:1 3:3 9:5 4:1 1:1
    groups = UserGroups.of(keys, max_rows=8)
    classes = groups.by_width()

    assert sorted(sub.width for *_, sub in classes) == [1, 4, 8]
    assert sorted(torch.cat([u for u, _, _ in classes]).tolist()) == list(range(groups.users))
    assert sorted(torch.cat([r for _, r, _ in classes]).tolist()) == list(range(len(keys)))
    for users, rows, sub in classes:
        assert sub.users == len(users) and len(sub.user) == len(rows)
        assert sub.users * sub.width < 2 * len(rows) or sub.width == 1
