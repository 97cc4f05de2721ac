"""The platform's write-ahead journal of training replies: kept before they are used.

A partner's update is a DP release the moment it leaves the node, so keeping it
costs no privacy, and losing it would waste the epsilon it cost. Every training
reply the ServerApp receives is written here (fsync-ed, atomically named) before the
round aggregates it. A run that resumes (:mod:`fedctr.server.platform.run_state`)
completes an interrupted round from these files instead of asking partners to train
again, and rebuilds the records of finished rounds from them (each reply is checked
again on the way in, so a journal file edited on disk is rejected like any bad reply).

One file per reply: ``round-NNNN/node-<id>-<sha256[:16]>.pb``, the reply's content in
Flower's own protobuf wire format (never a pickle). Error replies carry no release and
are not journaled; the round log keeps their code.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Message, MessageType, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict
from google.protobuf.message import DecodeError

from fedctr.durable import replace_file
from fedctr.server.platform.errors import ResumeError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"node-(\d+)-([0-9a-f]{16})\.pb")


@dataclass(frozen=True)
class JournaledReply:
    """One stored reply: the node that sent it and its content, as received."""

    server_round: int
    node_id: int
    content: RecordDict

    def message(self) -> Message:
        """The reply as a Flower :class:`Message` from ``node_id`` (what strategies take)."""
        instruction = Message(
            RecordDict(),
            dst_node_id=self.node_id,
            message_type=MessageType.TRAIN,
            group_id=str(self.server_round),
        )
        return Message(self.content, reply_to=instruction)


class UpdateJournal:
    """Training replies of one run, by round, on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _round_dir(self, server_round: int) -> Path:
        return self.directory / f"round-{server_round:04d}"

    def record(self, server_round: int, replies: list[Message]) -> int:
        """Write every reply that carries content; returns how many are new on disk."""
        written = 0
        for msg in replies:
            if msg.has_error() or not msg.has_content():
                continue
            data = recorddict_to_proto(msg.content).SerializeToString()
            digest = hashlib.sha256(data).hexdigest()[:16]
            folder = self._round_dir(server_round)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"node-{msg.metadata.src_node_id}-{digest}.pb"
            if path.exists():
                continue  # the same bytes, already durable (a replayed reply)
            replace_file(path, data, mode=0o600)
            written += 1
        return written

    def replies(self, server_round: int) -> list[JournaledReply]:
        """The stored replies of ``server_round``, in node order.

        A file whose name does not match its bytes is a :class:`ResumeError`: the
        journal was changed after it was written, and resuming from it would aggregate
        something no partner sent.
        """
        folder = self._round_dir(server_round)
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.iterdir()):
            match = _NAME.fullmatch(path.name)
            if match is None:
                continue  # a temp file of an interrupted write
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest()[:16] != match.group(2):
                raise ResumeError(
                    f"{path}: journaled reply does not match the hash in its name; the "
                    "journal was modified. Restore it, or start the run afresh."
                )
            try:
                content = recorddict_from_proto(ProtoRecordDict.FromString(data))
            except (DecodeError, ValueError, TypeError) as exc:
                raise ResumeError(f"{path}: journaled reply is unreadable: {exc}") from exc
            out.append(JournaledReply(server_round, int(match.group(1)), content))
        return out

    def messages(self, server_round: int) -> list[Message]:
        return [r.message() for r in self.replies(server_round)]


__all__ = ["JournaledReply", "UpdateJournal"]
