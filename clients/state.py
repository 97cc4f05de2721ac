"""The partner's durable privacy state: what it has spent, kept on its own disk.

The accountant history must survive rounds, node restarts and new runs, because a
budget covers the partner's whole participation. It is written atomically (temp
file, fsync, rename) *before* an update leaves the node, so a crash can only
over-count spending, never under-count it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.errors import PartnerError
from fedctr.durable import replace_file
from privacy import AccountantKind, AccountantStateError, PartnerAccountant

STATE_FILE = "privacy-state.json"
STATE_VERSION = 1


class PartnerStateError(PartnerError):
    """The partner's stored privacy state is unreadable or inconsistent."""


@dataclass
class PartnerState:
    """Accountant history plus the rounds joined (run id, round) in order."""

    accountant: PartnerAccountant
    rounds: list[tuple[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": STATE_VERSION,
            "accountant": self.accountant.state_dict(),
            "rounds": [[run, rnd] for run, rnd in self.rounds],
        }


def load_state(state_dir: Path, *, kind: AccountantKind) -> PartnerState:
    """Read the state, or a fresh one if the partner never trained."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return PartnerState(PartnerAccountant(kind=kind), [])
    try:
        raw = json.loads(path.read_text())
        if raw.get("schema_version") != STATE_VERSION:
            raise PartnerStateError(
                f"{path}: unsupported state version {raw.get('schema_version')}"
            )
        accountant = PartnerAccountant.from_state_dict(raw["accountant"])
        rounds = [(str(run), int(rnd)) for run, rnd in raw["rounds"]]
    except (OSError, ValueError, KeyError, TypeError, AccountantStateError) as exc:
        raise PartnerStateError(
            f"{path}: privacy state is unreadable ({exc}); refusing to train rather than "
            "forget spent budget. Restore it from backup."
        ) from exc
    if accountant.kind != kind:
        raise PartnerStateError(
            f"{path}: spending was accounted with '{accountant.kind}', config asks for '{kind}'"
        )
    return PartnerState(accountant, rounds)


def save_state(state_dir: Path, state: PartnerState) -> None:
    """Atomically replace the state file (fsync file and directory)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = json.dumps(state.to_dict(), indent=1).encode()
    replace_file(state_dir / STATE_FILE, data, mode=0o600)  # the partner's own spend


__all__ = ["PartnerState", "PartnerStateError", "load_state", "save_state"]
