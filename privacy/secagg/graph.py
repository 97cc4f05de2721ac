"""Who masks with whom: the neighbourhood graph of one session.

A ring over the session's nodes in an order drawn from the session id, each node
joined to ``neighbours / 2`` nodes on either side (SecAgg+), or to every node when
``neighbours`` is 0 or covers everyone. Both sides compute it from the node list
and the session id, so a partner checks the graph instead of trusting it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def neighbourhood(nodes: Sequence[int], node: int, *, neighbours: int, session: str) -> list[int]:
    """``node`` and its neighbours, sorted."""
    members = sorted(set(nodes))
    if node not in members:
        raise ValueError(f"node {node} is not in the session")
    if neighbours == 0 or neighbours >= len(members) - 1:
        return members
    ring = sorted(members, key=lambda n: hashlib.sha256(f"{session}:{n}".encode()).digest())
    at = ring.index(node)
    half = neighbours // 2
    return sorted({ring[(at + step) % len(ring)] for step in range(-half, half + 1)})


__all__ = ["neighbourhood"]
