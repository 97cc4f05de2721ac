"""The platform's side of one SecAgg+ session: route keys and shares, then unmask the sum.

The platform never holds a partner's update: it receives masked inputs (uniform on
``Z_(2^64)`` one by one) and, after the round, the shares it needs to remove the
masks of the *sum*: self-mask seeds of the partners whose inputs it aggregates, and
mask keys of partners that dropped after sharing. Each reconstructed secret is
checked (a seed against its published commitment, a key against its public key);
a holder whose share is malformed is left out and the secret rebuilt from the
others; a secret that cannot be rebuilt from ``threshold`` valid shares aborts the
round (:class:`SecAggAbort`), which is then not aggregated.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fedctr.privacy.secagg import keys as K
from fedctr.privacy.secagg.errors import SecAggAbort, SecAggError
from fedctr.privacy.secagg.graph import neighbourhood
from fedctr.privacy.secagg.partner import commitment, pair_seed
from fedctr.privacy.secagg.settings import SecAggSettings
from fedctr.privacy.secagg.vectors import as_signed, derive_seed, mask

logger = logging.getLogger(__name__)

_MAX_SUBSETS = 64  # t-subsets tried per secret when a share is wrong but well formed


@dataclass
class AggregatorSession:
    """One round's session on the platform, from the nodes asked to train."""

    settings: SecAggSettings
    session: str
    server_round: int
    nodes: list[int]
    public: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # U1
    routed: dict[int, dict[int, bytes]] = field(default_factory=dict)  # dst -> src -> ct (U2)
    commitments: dict[int, bytes] = field(default_factory=dict)
    shares: dict[tuple[int, str], dict[int, bytes]] = field(default_factory=dict)
    excluded: dict[int, str] = field(default_factory=dict)  # node -> why (protocol-level)
    _members: dict[int, list[int]] = field(default_factory=dict, repr=False)

    # ---- setup -----------------------------------------------------------------------
    def accept_keys(self, node: int, key_c: bytes, key_s: bytes) -> None:
        try:
            K.public_from_bytes(key_c), K.public_from_bytes(key_s)
        except SecAggError:
            self.excluded[node] = "secagg-malformed-keys"
            return
        self.public[node] = (key_c, key_s)

    def key_nodes(self) -> list[int]:
        return sorted(self.public)

    def members(self, node: int) -> list[int]:
        """``node``'s neighbourhood among the nodes that announced keys (fixed once the
        share-keys step starts, so computed once per node)."""
        if node not in self._members:
            self._members[node] = neighbourhood(
                self.key_nodes(), node, neighbours=self.settings.neighbours, session=self.session
            )
        return self._members[node]

    # ---- share keys ------------------------------------------------------------------
    def accept_shares(
        self, node: int, recipients: list[int], ciphertexts: list[bytes], b_commitment: bytes
    ) -> None:
        expected = set(self.members(node)) - {node}
        if (
            len(recipients) != len(ciphertexts)
            or set(recipients) != expected
            or len(recipients) != len(expected)
            or len(b_commitment) != 32
        ):
            self.excluded[node] = "secagg-malformed-shares"
            return
        for dst, ct in zip(recipients, ciphertexts, strict=True):
            self.routed.setdefault(dst, {})[node] = ct
        self.commitments[node] = b_commitment

    def sharing_nodes(self) -> list[int]:
        """U2: nodes whose shares were routed."""
        return sorted(self.commitments)

    def forwarded(self, node: int) -> tuple[list[int], list[bytes]]:
        """The shares addressed to ``node`` from nodes that completed sharing."""
        inbox = {
            src: ct for src, ct in self.routed.get(node, {}).items() if src in self.commitments
        }
        senders = sorted(inbox)
        return senders, [inbox[s] for s in senders]

    # ---- unmask ----------------------------------------------------------------------
    def unmask_request(self, node: int, survivors: set[int]) -> tuple[list[int], list[int]]:
        """(active, dropped) as ``node`` must answer them: its own neighbourhood only."""
        sharing = set(self.sharing_nodes())
        members = [m for m in self.members(node) if m in sharing]
        return (
            [m for m in members if m in survivors],
            [m for m in members if m not in survivors],
        )

    def accept_unmask(
        self, node: int, owners: list[int], shares: list[bytes], survivors: set[int]
    ) -> None:
        """Keep the well-formed shares ``node`` returned; a malformed one excludes them all."""
        active, dropped = self.unmask_request(node, survivors)
        if sorted(owners) != sorted(active + dropped) or len(owners) != len(shares):
            self.excluded[node] = "secagg-malformed-unmask"
            return
        checked: list[tuple[tuple[int, str], bytes]] = []
        for owner, share in zip(owners, shares, strict=True):
            position = self.members(owner).index(node) + 1
            if len(share) < 20 or K.share_index(share) != position:
                self.excluded[node] = "secagg-malformed-unmask"
                logger.warning(
                    "round %d: node %d returned a malformed share of node %d; its shares are "
                    "left out",
                    self.server_round,
                    node,
                    owner,
                )
                return
            checked.append(((owner, "b" if owner in survivors else "sk"), share))
        for key, share in checked:
            self.shares.setdefault(key, {})[node] = share

    def unmask(self, masked: Mapping[int, np.ndarray]) -> np.ndarray:
        """The sum of the survivors' inputs (int64, two's complement) or SecAggAbort."""
        survivors = set(masked)
        if not survivors:
            raise SecAggAbort(f"round {self.server_round}: no masked input to unmask")
        size = next(iter(masked.values())).size
        total = np.zeros(size, dtype=np.uint64)
        for node in sorted(survivors):
            total += np.ascontiguousarray(masked[node], dtype=np.uint64)
        for node in sorted(survivors):
            seed = self._rebuild(node, "b")
            total -= mask(derive_seed(b"self", self.session, seed), size)
        dropped = set(self.sharing_nodes()) - survivors
        for gone in sorted(dropped):
            partners = [m for m in self.members(gone) if m in survivors]
            if not partners:
                continue
            key = K.private_from_bytes(self._rebuild(gone, "sk"))
            for node in partners:
                pair = mask(pair_seed(self.session, key, self.public[node][1]), size)
                if node < gone:
                    total -= pair  # ``node`` added it
                else:
                    total += pair
        return as_signed(total)

    def _rebuild(self, owner: int, kind: str) -> bytes:
        held = self.shares.get((owner, kind), {})
        usable = {h: s for h, s in held.items() if h not in self.excluded}
        need = self.settings.threshold_for(len(self.members(owner)))
        what = "self-mask seed" if kind == "b" else "mask key"
        if len(usable) < need:
            raise SecAggAbort(
                f"round {self.server_round}: {len(usable)} valid share(s) of node {owner}'s "
                f"{what}, fewer than the threshold {need}; the sum cannot be unmasked"
            )
        holders = sorted(usable)
        for subset in itertools.islice(itertools.combinations(holders, need), _MAX_SUBSETS):
            try:
                secret = K.join_shares([usable[h] for h in subset])
            except SecAggError:
                continue
            if self._verifies(owner, kind, secret):
                return secret
        raise SecAggAbort(
            f"round {self.server_round}: the shares of node {owner}'s {what} do not rebuild a "
            "secret that matches what it published; the round is not aggregated"
        )

    def _verifies(self, owner: int, kind: str, secret: bytes) -> bool:
        if kind == "b":
            return commitment(self.session, secret) == self.commitments[owner]
        try:
            return K.public_bytes(K.private_from_bytes(secret)) == self.public[owner][1]
        except SecAggError:
            return False


__all__ = ["AggregatorSession"]
