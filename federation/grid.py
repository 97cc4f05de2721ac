"""The ServerApp's grid: replies collected as they arrive, models sent packed.

Flower 1.41's ``HttpGrid.send_and_receive`` pushes the messages, then pulls the
replies with a fixed ``time.sleep(3)`` between pulls, so every message round trip
of a deployment costs up to 3 s more than the slowest partner. This wrapper keeps
Flower's grid and its public API (``push_messages`` / ``pull_messages``), polls
more often, and sends each model as one array per dtype
(:mod:`fedctr.federation.packing`: 7 Flower objects per message instead of 24), unpacking
the replies before anyone reads them. The ServerApp wraps every grid it is given,
under simulation (in-memory grid) and deployment alike; ``FEDCTR_FLOWER_WAITS=stock``
turns it off (the benchmark's stock side).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator

from flwr.app import Error, Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from fedctr.federation.packing import PackCache, PackingError, pack_content, unpack_content
from fedctr.privacy.wire import ErrorCode, ErrorReply, Problem

_UNREADABLE = ErrorReply(code=ErrorCode.PACKING, problem=Problem.UNREADABLE_ARRAYS).reason()

logger = logging.getLogger(__name__)
WAITS_ENV = "FEDCTR_FLOWER_WAITS"
STOCK = "stock"
DEFAULT_POLL_S = 0.1


class ResponsiveGrid(Grid):
    """Delegate everything to ``grid``; poll for replies every ``poll_s`` seconds;
    pack the arrays of what is pushed and unpack those of what is pulled."""

    def __init__(
        self,
        grid: Grid,
        *,
        poll_s: float = DEFAULT_POLL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < poll_s <= 3:
            raise ValueError("poll_s must be in (0, 3] seconds")
        self.grid = grid
        self.poll_s = poll_s
        self._clock = clock
        self._sleep = sleep

    # ---- delegated ---------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self.grid.get_nodes()

    # ---- packing -----------------------------------------------------------
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        cache: PackCache = {}  # the model every message shares is packed once
        for msg in messages:
            if msg.has_content():
                msg.content = pack_content(msg.content, cache)
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._unpacked(reply) for reply in self.grid.pull_messages(message_ids)]

    def _unpacked(self, reply: Message) -> Message:
        """``reply`` with its arrays unpacked; an error reply if they are unreadable."""
        if not reply.has_content():
            return reply
        try:
            reply.content = unpack_content(reply.content)
        except PackingError as exc:
            logger.warning("reply from node %d dropped: %s", reply.metadata.src_node_id, exc)
            # Same sender, same reply_to: the strategy counts it as that partner's failure.
            return Message(
                metadata=reply.metadata,
                error=Error(code=int(ErrorCode.PACKING), reason=_UNREADABLE),
            )
        return reply

    # ---- polling -----------------------------------------------------------
    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``; return the replies that arrive within ``timeout`` seconds."""
        return list(self.receive(messages, timeout=timeout))

    def receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterator[Message]:
        """Push ``messages``; yield each reply as it is pulled, until all have answered or
        ``timeout`` seconds passed. The caller may handle (and drop) each reply before the
        next is pulled, so the replies of a round need not be in memory together."""
        messages = list(messages)
        if not messages:
            return
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else self._clock() + timeout
        while pending:
            arrived = list(self.pull_messages(pending))
            pending.difference_update(m.metadata.reply_to_message_id for m in arrived)
            yield from arrived
            if not pending or (deadline is not None and self._clock() >= deadline):
                break
            self._sleep(self.poll_s)


def responsive_grid(grid: Grid) -> Grid:
    """``grid`` wrapped in :class:`ResponsiveGrid` unless ``FEDCTR_FLOWER_WAITS=stock``.

    In a real deployment (Flower's HTTP grid, not the simulation's in-memory one) the
    ServerApp process also gets Flower's object-pull backoff shortened (pinned
    internals, :func:`fedctr.federation.flower_runtime.tune_serverapp_process`).
    """
    if os.environ.get(WAITS_ENV, "") == STOCK:
        return grid
    from fedctr.federation.flower_runtime import tune_serverapp_process

    tune_serverapp_process(grid)
    return ResponsiveGrid(grid)


__all__ = ["WAITS_ENV", "ResponsiveGrid", "responsive_grid"]
