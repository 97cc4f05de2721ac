"""The platform's record of a run, round by round, as partners reported it.

Kept explicitly (passed to the strategy wrapper, never hidden in it) and appended
to ``rounds.jsonl`` after each round so progress can be followed live and the
model card can be built from it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedctr.privacy.wire import TrainReply

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartnerTrainRecord:
    """One partner's accepted (or ledgered but rejected) training reply.

    ``reply`` is the contract-parsed report (``None`` only for a non-private
    benchmark baseline); nothing else of the partner's message is kept.
    """

    partner_id: str
    node_id: int
    epsilon: float | None  # None: a non-private benchmark baseline
    delta: float | None
    reply: TrainReply | None


@dataclass(frozen=True)
class Failure:
    """A partner that did not contribute: its error reply's code, class and column.

    ``kind`` is the error code's name or a platform-side rejection
    (``invalid-update``, ``contract-violation``); ``problem`` the declared reason
    class. Never a row number or a value: the contract does not carry them.
    """

    node_id: int
    kind: str
    problem: str
    column: str | None = None
    file: str | None = None


@dataclass
class RoundRecord:
    round: int
    train: list[PartnerTrainRecord] = field(default_factory=list)
    rejected: list[PartnerTrainRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    aggregated: bool = False
    global_metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


class RoundLog:
    """Accumulates :class:`RoundRecord` objects; one JSON line per finished round."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.rounds: dict[int, RoundRecord] = {}

    def round(self, server_round: int) -> RoundRecord:
        return self.rounds.setdefault(server_round, RoundRecord(server_round))

    def flush(self, server_round: int) -> None:
        """Append the finished round to the JSONL file."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(self.round(server_round).to_json()) + "\n")

    def contributors(self) -> dict[str, list[PartnerTrainRecord]]:
        """Partner id -> its accepted training replies, in round order."""
        out: dict[str, list[PartnerTrainRecord]] = {}
        for rnd in sorted(self.rounds):
            record = self.rounds[rnd]
            if not record.aggregated:
                continue
            for t in record.train:
                out.setdefault(t.partner_id, []).append(t)
        return out


def failure_text(failure: Mapping[str, Any]) -> str:
    """One failure of a ``rounds.jsonl`` row, as the platform may tell it (fedctr.privacy.wire)."""
    column = f", column {failure['column']}" if failure.get("column") else ""
    return f"node {failure['node_id']}: {failure['kind']} ({failure['problem']}{column})"


def read_round_log(path: Path) -> list[dict[str, Any]]:
    """Rounds written so far (skips a partially written last line)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


__all__ = [
    "Failure",
    "PartnerTrainRecord",
    "RoundLog",
    "RoundRecord",
    "failure_text",
    "read_round_log",
]
