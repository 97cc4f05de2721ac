"""The partner's ClientApp mod for secure aggregation (SecAgg+ on the Message API).

Flower's own ``secaggplus_mod`` answers only legacy ``FitIns``/``FitRes`` messages.
This mod answers fedctr's protocol requests (``setup``, ``share-keys``, ``unmask``:
train messages carrying a ``secagg`` config record) itself, through
:mod:`fedctr.clients.secagg`, and passes every other message on; the ``collect``
request is a training message, which the train handler seals before ledgering. A
refused or failed request is an error reply with the contract's reason class.
The open session is kept in the node's Flower context, on the partner's machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from fedctr.clients import secagg as S
from fedctr.federation.replies import error_reply
from fedctr.privacy import wire as P

logger = logging.getLogger(__name__)


class ContextStore(MutableMapping[str, str]):
    """A node's context state as the session store (one ConfigRecord per key)."""

    def __init__(self, state: RecordDict) -> None:
        self.state = state

    def __getitem__(self, key: str) -> str:
        record = self.state.config_records[key]
        return str(record["json"])

    def __setitem__(self, key: str, value: str) -> None:
        self.state[key] = ConfigRecord({"json": value})

    def __delitem__(self, key: str) -> None:
        del self.state[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.state.config_records)

    def __len__(self) -> int:
        return len(self.state.config_records)


def is_protocol_request(msg: Message) -> bool:
    """A secure-aggregation step other than ``collect`` (the training message)."""
    if msg.metadata.message_type != MessageType.TRAIN or not msg.has_content():
        return False
    request = msg.content.config_records.get(P.SECAGG)
    return request is not None and request.get("stage") != "collect"


def answer_request(msg: Message, state: RecordDict) -> Message:
    """The reply to one protocol request, or the contract's error reply."""
    try:
        reply = S.answer(
            dict(msg.content.config_records[P.SECAGG]),
            node=msg.metadata.dst_node_id,
            store=ContextStore(state),
        )
    except Exception as exc:  # nothing but the contract may leave
        return error_reply(msg, exc)
    return Message(RecordDict({P.SECAGG: ConfigRecord(reply)}), reply_to=msg)


def secagg_mod(msg: Message, context: Context, call_next: Callable[..., Message]) -> Message:
    """Answer secure-aggregation protocol requests; pass everything else on."""
    if is_protocol_request(msg):
        return answer_request(msg, context.state)
    return call_next(msg, context)


__all__ = ["ContextStore", "answer_request", "is_protocol_request", "secagg_mod"]
