"""The partner's side of one SecAgg+ session: keys, shares, mask, and what it reveals.

A partner answers four requests in order (setup, share keys, collect, unmask) and
checks each against what it already knows, because the platform is the party the
masks protect against: a threshold below a majority, a node list without its own
key, a share that does not decrypt, or a request to reveal both the self-mask share
and the key share of one neighbour is refused (:class:`SecAggRefused`), and the
partner sends no masked input (or no shares) in that session.

State lives between requests as JSON (``to_json``/``from_json``): the node's Flower
context keeps it, on the partner's own machine.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.common.secure_aggregation.secaggplus_utils import (
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)

from fedctr.privacy.secagg import keys as K
from fedctr.privacy.secagg.errors import SecAggError, SecAggRefused
from fedctr.privacy.secagg.graph import neighbourhood
from fedctr.privacy.secagg.settings import SecAggSettings
from fedctr.privacy.secagg.vectors import derive_seed, mask

SEED_BYTES = 32


def commitment(session: str, self_seed: bytes) -> bytes:
    """What a partner publishes of its self-mask seed, so a reconstruction can be checked."""
    return hashlib.sha256(b"fedctr/secagg/commit\0" + session.encode() + b"\0" + self_seed).digest()


@dataclass
class PartnerSession:
    session: str
    node: int
    server_round: int
    settings: SecAggSettings
    key_c: bytes  # private scalar: encrypts shares
    key_s: bytes  # private scalar: agrees pairwise masks
    stage: str = "setup"
    public: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    members: list[int] = field(default_factory=list)
    threshold: int = 0
    self_seed: bytes = b""
    held: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    masked_with: list[int] = field(default_factory=list)
    revealed: dict[int, str] = field(default_factory=dict)
    # Distributed DP: the partner's noise share protects it only in a sum of at least
    # this many inputs, so it never helps unmask a smaller one (0: no such floor).
    min_active: int = 0

    # ---- setup ---------------------------------------------------------------------
    @classmethod
    def start(
        cls, *, session: str, node: int, server_round: int, settings: SecAggSettings
    ) -> PartnerSession:
        """Fresh keys for this session only (a key pair is never reused across sessions)."""
        return cls(
            session=session,
            node=node,
            server_round=server_round,
            settings=settings,
            key_c=K.private_bytes(K.new_private_key()),
            key_s=K.private_bytes(K.new_private_key()),
        )

    def public_keys(self) -> tuple[bytes, bytes]:
        return (
            K.public_bytes(K.private_from_bytes(self.key_c)),
            K.public_bytes(K.private_from_bytes(self.key_s)),
        )

    # ---- share keys ----------------------------------------------------------------
    def share_keys(
        self, nodes: list[int], keys_c: list[bytes], keys_s: list[bytes]
    ) -> tuple[list[int], list[bytes], bytes]:
        """(recipients, encrypted shares, commitment to the self-mask seed)."""
        self._expect("setup")
        if not len(nodes) == len(keys_c) == len(keys_s) or len(set(nodes)) != len(nodes):
            raise SecAggRefused("the node list and its keys do not match one to one")
        public = {n: (c, s) for n, c, s in zip(nodes, keys_c, keys_s, strict=True)}
        if public.get(self.node) != self.public_keys():
            raise SecAggRefused("the node list does not carry this node's own public keys")
        if len({c for c, _ in public.values()} | {s for _, s in public.values()}) != 2 * len(nodes):
            raise SecAggRefused("two nodes announce the same public key")
        for c, s in public.values():
            K.public_from_bytes(c), K.public_from_bytes(s)
        members = neighbourhood(
            nodes, self.node, neighbours=self.settings.neighbours, session=self.session
        )
        if len(members) < 2:
            raise SecAggRefused("a neighbourhood of one would hide nothing")
        self.public = {n: public[n] for n in members}
        self.members = members
        self.threshold = self.settings.threshold_for(len(members))
        self.self_seed = secrets.token_bytes(SEED_BYTES)
        b_shares = K.split_secret(self.self_seed, self.threshold, len(members))
        s_shares = K.split_secret(self.key_s, self.threshold, len(members))
        own = K.private_from_bytes(self.key_c)
        recipients, sealed = [], []
        for member, b_share, s_share in zip(members, b_shares, s_shares, strict=True):
            if member == self.node:
                self.held[self.node] = (b_share, s_share)
                continue
            plaintext = share_keys_plaintext_concat(self.node, member, b_share, s_share)
            recipients.append(member)
            sealed.append(K.seal_for(own, self.public[member][0], plaintext))
        self.stage = "shared"
        return recipients, sealed, commitment(self.session, self.self_seed)

    # ---- collect ---------------------------------------------------------------------
    def receive(self, senders: list[int], ciphertexts: list[bytes]) -> None:
        """Keep the shares neighbours sent; mask with exactly those neighbours."""
        self._expect("shared")
        if len(senders) != len(ciphertexts) or len(set(senders)) != len(senders):
            raise SecAggRefused("forwarded shares and their senders do not match one to one")
        own = K.private_from_bytes(self.key_c)
        for sender, ciphertext in zip(senders, ciphertexts, strict=True):
            if sender == self.node or sender not in self.public:
                raise SecAggRefused(f"a share from node {sender}, which is not a neighbour")
            try:
                plaintext = K.open_from(own, self.public[sender][0], ciphertext)
            except SecAggError as exc:
                raise SecAggRefused(f"the share from node {sender} does not decrypt") from exc
            src, dst, b_share, s_share = share_keys_plaintext_separate(plaintext)
            if (src, dst) != (sender, self.node):
                raise SecAggRefused(f"the share from node {sender} names another route")
            self.held[sender] = (b_share, s_share)
        self.masked_with = sorted(senders)
        if len(self.masked_with) + 1 < self.threshold:
            raise SecAggRefused(
                f"shares from {len(self.masked_with)} neighbour(s) arrived; at least "
                f"{self.threshold - 1} are needed for the threshold of {self.threshold}"
            )

    def seal(self, words: np.ndarray) -> np.ndarray:
        """The masked input: ``words`` + self mask + signed pairwise masks (mod 2^64)."""
        self._expect("shared")
        if not self.masked_with and self.held.keys() == {self.node}:
            raise SecAggRefused("no neighbour shares arrived; nothing would hide the update")
        out = words.astype(np.uint64, copy=True)
        out += mask(derive_seed(b"self", self.session, self.self_seed), out.size)
        own = K.private_from_bytes(self.key_s)
        for other in self.masked_with:
            pair = mask(pair_seed(self.session, own, self.public[other][1]), out.size)
            if self.node < other:
                out += pair
            else:
                out -= pair
        self.stage = "masked"
        return out

    # ---- unmask ----------------------------------------------------------------------
    def unmask(self, active: list[int], dropped: list[int]) -> tuple[list[int], list[bytes]]:
        """Self-mask shares of ``active`` neighbours, key shares of ``dropped`` ones."""
        self._expect("masked")
        a, d = set(active), set(dropped)
        if len(a) != len(active) or len(d) != len(dropped) or a & d:
            raise SecAggRefused("a node is listed twice, or both active and dropped")
        if self.node not in a:
            raise SecAggRefused("this node sent its masked input and is listed as dropped")
        known = set(self.masked_with) | {self.node}
        if not a | d <= known:
            raise SecAggRefused("the unmask request names nodes this node did not mask with")
        if len(a) < max(self.threshold, self.min_active):
            raise SecAggRefused(
                f"only {len(a)} active node(s) in this neighbourhood, fewer than the "
                f"threshold {max(self.threshold, self.min_active)}: their sum would be too "
                "small to hide in"
            )
        for node in a | d:
            kind = "b" if node in a else "sk"
            if self.revealed.get(node, kind) != kind:
                raise SecAggRefused(
                    f"node {node}'s self-mask share and key share were both asked for; "
                    "together they would unmask it alone"
                )
        nodes, shares = [], []
        for node in sorted(a | d):
            kind = "b" if node in a else "sk"
            self.revealed[node] = kind
            b_share, s_share = self.held[node]
            nodes.append(node)
            shares.append(b_share if kind == "b" else s_share)
        return nodes, shares

    def _expect(self, stage: str) -> None:
        if self.stage != stage:
            raise SecAggRefused(
                f"secure aggregation request out of order (at '{self.stage}', asked for a "
                f"step after '{stage}')"
            )

    # ---- persistence -----------------------------------------------------------------
    def to_json(self) -> str:
        def pair(p: tuple[bytes, bytes]) -> list[str]:
            return [p[0].hex(), p[1].hex()]

        return json.dumps(
            {
                "session": self.session,
                "node": self.node,
                "server_round": self.server_round,
                "settings": self.settings.to_dict(),
                "key_c": self.key_c.hex(),
                "key_s": self.key_s.hex(),
                "stage": self.stage,
                "public": {str(n): pair(p) for n, p in self.public.items()},
                "members": self.members,
                "threshold": self.threshold,
                "self_seed": self.self_seed.hex(),
                "held": {str(n): pair(p) for n, p in self.held.items()},
                "masked_with": self.masked_with,
                "revealed": {str(n): k for n, k in self.revealed.items()},
                "min_active": self.min_active,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PartnerSession:
        raw: dict[str, Any] = json.loads(text)

        def pair(p: list[str]) -> tuple[bytes, bytes]:
            return bytes.fromhex(p[0]), bytes.fromhex(p[1])

        return cls(
            session=raw["session"],
            node=int(raw["node"]),
            server_round=int(raw["server_round"]),
            settings=SecAggSettings(**raw["settings"]),
            key_c=bytes.fromhex(raw["key_c"]),
            key_s=bytes.fromhex(raw["key_s"]),
            stage=raw["stage"],
            public={int(n): pair(p) for n, p in raw["public"].items()},
            members=[int(n) for n in raw["members"]],
            threshold=int(raw["threshold"]),
            self_seed=bytes.fromhex(raw["self_seed"]),
            held={int(n): pair(p) for n, p in raw["held"].items()},
            masked_with=[int(n) for n in raw["masked_with"]],
            revealed={int(n): str(k) for n, k in raw["revealed"].items()},
            min_active=int(raw.get("min_active", 0)),
        )


def pair_seed(session: str, own: Any, other_public: bytes) -> bytes:
    """The pairwise mask seed two neighbours both derive (and the platform, from a
    reconstructed key of a dropped one)."""
    return derive_seed(b"pair", session, K.shared_secret(own, other_public))


__all__ = ["PartnerSession", "commitment", "pair_seed"]
