"""Which arm a request goes to: a keyed hash of its split key against the canary share.

The split is deterministic (the same key always lands in the same bucket) and sticky
under a ramp: a key's 64-bit bucket never changes, and the canary takes the buckets
below ``share * 2**64``, so raising the share only moves keys from control to canary,
never back (a user who saw the canary keeps seeing it as it ramps up).
The hash is keyed with a per-deployment salt, so a caller cannot choose ids that all
land in one arm without knowing it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

BUCKETS = 1 << 64


class Arm(IntEnum):
    """The two arms; the values index the shared counters (:mod:`.board`)."""

    CONTROL = 0
    CANARY = 1

    @property
    def label(self) -> str:
        return self.name.lower()


def bucket(key: str, salt: bytes) -> int:
    """The key's position in [0, 2**64): BLAKE2b keyed with ``salt``, 8 bytes."""
    return int.from_bytes(hashlib.blake2b(key.encode(), key=salt, digest_size=8).digest(), "little")


def threshold(share: float) -> int:
    """Buckets below this go to the canary (``share`` in [0, 1])."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"canary share must be in [0, 1], got {share}")
    return min(BUCKETS, round(share * BUCKETS))


@dataclass(frozen=True)
class TrafficSplit:
    """Assigns keys to arms for one salt; the share is read per call (it ramps)."""

    salt: bytes

    def arm(self, key: str | None, share: float) -> Arm:
        """The arm for ``key``; a request without a key stays on control (unrecorded)."""
        if key is None or share <= 0.0:
            return Arm.CONTROL
        return Arm.CANARY if bucket(key, self.salt) < threshold(share) else Arm.CONTROL


__all__ = ["BUCKETS", "Arm", "TrafficSplit", "bucket", "threshold"]
