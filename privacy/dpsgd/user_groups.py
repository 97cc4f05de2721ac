"""Per-user gradient norms for user-level DP-SGD.

Under user-level DP the unit is a person: a step samples *users*, and what is clipped
is the sum of the gradients of one user's rows in the batch. That sum needs no new
norm code: a user is an "example" whose positions are its rows. Gathering each
user's rows into one padded example (``[U, k * T, ...]``, zeros where a user has
fewer than ``k`` rows) lets :func:`~fedctr.privacy.dpsgd.sparse_norms.linear_norm_sq`
and :func:`~fedctr.privacy.dpsgd.sparse_norms.embedding_norm_sq` compute per-user
norms exactly as they compute per-example ones: the linear layer's Gram identity sums
over every pair of the user's positions, the embedding sums a user's repeated rows
before squaring (across its rows too), and zero backprops in the padding count for
nothing. ``k`` is the data-independent bound on one user's rows per step (rows beyond
it are the sampler's to drop, never this module's); the layout is only as wide as the
batch's busiest user needs (``width <= k``), which keeps padding and memory down on
the steps where no heavy user is sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.validate import Checker


@dataclass(frozen=True)
class UserGroups:
    """Where each row of a batch goes in the per-user layout.

    ``users`` distinct users (``0..users-1`` in order of first appearance), each with at
    most ``max_rows`` rows; row ``i`` of the batch becomes slot ``slot[i]`` of user
    ``user[i]``; ``width`` slots per user (the most rows any user has in this batch).
    """

    user: torch.Tensor  # [N] long
    slot: torch.Tensor  # [N] long
    users: int
    max_rows: int
    width: int

    @classmethod
    def of(cls, user_keys: torch.Tensor, *, max_rows: int) -> UserGroups:
        """Group a batch by its rows' user keys (any integer ids, e.g. salted hashes).

        Raises :class:`InvalidPrivacyParameter` if a user has more than ``max_rows``
        rows: the contribution bound is the sampler's promise, and a batch that breaks
        it must not be clipped as if it held.
        """
        if user_keys.dim() != 1:
            raise InvalidPrivacyParameter("user keys must be one id per row")
        Checker(InvalidPrivacyParameter).integer(max_rows, "max_rows", minimum=1)
        n = len(user_keys)
        uniques, inverse = torch.unique(user_keys, return_inverse=True)
        # number users by first appearance, so the layout does not depend on key values
        rows = torch.arange(n)
        first_row = torch.full((len(uniques),), n, dtype=torch.long)
        first_row.scatter_reduce_(0, inverse, rows, reduce="amin", include_self=True)
        order = torch.argsort(first_row)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order))
        user = rank[inverse]
        # slot = how many earlier rows of the batch belong to the same user
        by_user = torch.argsort(user, stable=True)
        sorted_users = user[by_user]
        starts = torch.ones_like(sorted_users, dtype=torch.bool)
        starts[1:] = sorted_users[1:] != sorted_users[:-1]
        run_start = torch.cummax(torch.where(starts, rows, torch.zeros_like(rows)), 0).values
        slot = torch.empty_like(user)
        slot[by_user] = rows - run_start
        most = int(slot.max()) + 1 if len(slot) else 0
        if most > max_rows:
            raise InvalidPrivacyParameter(
                f"a user has {most} rows in this batch, above the declared bound of {max_rows}"
            )
        return cls(user=user, slot=slot, users=len(order), max_rows=max_rows, width=max(most, 1))

    def gather(self, per_row: torch.Tensor) -> torch.Tensor:
        """``[N, T, *rest]`` per-row tensor -> ``[U, width * T, *rest]``, zero-padded."""
        t = per_row.shape[1]
        rest = per_row.shape[2:]
        out = per_row.new_zeros((self.users, self.width, t, *rest))
        out[self.user, self.slot] = per_row
        return out.reshape(self.users, self.width * t, *rest)

    def by_width(self) -> list[tuple[torch.Tensor, torch.Tensor, UserGroups]]:
        """The users split by row count, rounded up to a power of two (1, 2, 4, ...):
        ``(users, rows, groups)`` per class, ``groups`` laying out just those rows at
        that width. One layout padded to the busiest user's count would make the many
        one-row users of a heavy-tailed log cost as much as the heaviest (and take
        linear layers off their cheap one-position formula); per class, padding stays
        under 2x."""
        counts = torch.bincount(self.user, minlength=self.users)
        width = torch.ones_like(counts)
        while bool((width < counts).any()):
            width = torch.where(width < counts, width * 2, width)
        out = []
        for w in torch.unique(width).tolist():
            users = (width == w).nonzero().squeeze(1)
            local = torch.full((self.users,), -1, dtype=torch.long)
            local[users] = torch.arange(len(users))
            rows = (local[self.user] >= 0).nonzero().squeeze(1)
            sub = UserGroups(
                user=local[self.user[rows]],
                slot=self.slot[rows],
                users=len(users),
                max_rows=self.max_rows,
                width=min(int(w), self.max_rows),
            )
            out.append((users, rows, sub))
        return out

    def spread(self, per_user: torch.Tensor) -> torch.Tensor:
        """A per-user value (``[U]``, e.g. a clip factor) for every row (``[N]``)."""
        return per_user[self.user]


__all__ = ["UserGroups"]
