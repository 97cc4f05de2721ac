"""Reading a ledger file without trusting it.

Every complete line is parsed on its own, so one bad line never hides the entries
around it. A last segment without its ``\\n`` is a torn tail: the writer emits a
whole line per ``write`` followed by ``fsync``, so only a crash mid-write leaves
one. Readers report it; they never guess what it was meant to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedctr.privacy.ledger.entry import Entry
from fedctr.privacy.ledger.errors import LedgerEntryInvalid, LedgerUnreadable


@dataclass(frozen=True, kw_only=True)
class TornTail:
    """An incomplete last line: ``length`` bytes at byte ``offset`` (line number ``line``)."""

    offset: int
    length: int
    line: int


@dataclass(frozen=True, kw_only=True)
class BadLine:
    """A complete line that is not a well-formed entry."""

    line: int
    offset: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class LedgerRead:
    """What a ledger file holds: well-formed entries (with their line numbers) and damage."""

    path: Path
    entries: tuple[Entry, ...]
    lines: tuple[int, ...]
    bad_lines: tuple[BadLine, ...]
    torn_tail: TornTail | None

    @property
    def intact(self) -> bool:
        """True if every line parsed and the file ends on a complete line."""
        return not self.bad_lines and self.torn_tail is None


def read_ledger(path: str | Path) -> LedgerRead:
    """Parse every line of the ledger at ``path``; damage is reported, not raised."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LedgerUnreadable(f"cannot read ledger {path}: {exc.strerror or exc}") from exc
    entries: list[Entry] = []
    lines: list[int] = []
    bad: list[BadLine] = []
    torn: TornTail | None = None
    offset = 0
    line_no = 0
    while offset < len(data):
        line_no += 1
        end = data.find(b"\n", offset)
        if end < 0:
            torn = TornTail(offset=offset, length=len(data) - offset, line=line_no)
            break
        raw = data[offset:end]
        try:
            entries.append(Entry.from_json(raw))
            lines.append(line_no)
        except LedgerEntryInvalid as exc:
            bad.append(BadLine(line=line_no, offset=offset, reason=str(exc)))
        offset = end + 1
    return LedgerRead(
        path=path,
        entries=tuple(entries),
        lines=tuple(lines),
        bad_lines=tuple(bad),
        torn_tail=torn,
    )


__all__ = ["BadLine", "LedgerRead", "TornTail", "read_ledger"]
