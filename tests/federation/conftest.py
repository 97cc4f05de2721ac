"""Fixtures of the federation tests: Flower messages as a grid hands them over."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flwr.app import Error, Message, Metadata, RecordDict

MessageFactory = Callable[..., Message]


def _received(content: RecordDict | Error, *, src: int = 0, reply_to: str = "m") -> Message:
    metadata = Metadata(
        run_id=1,
        message_id="",
        src_node_id=src,
        dst_node_id=0,
        reply_to_message_id=reply_to,
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type="train",
    )
    return Message(content, metadata=metadata)


@pytest.fixture
def received() -> MessageFactory:
    """``received(content_or_error, src=node, reply_to=id)``: a message with metadata set,
    as Flower's grid returns it (no run context needed)."""
    return _received
