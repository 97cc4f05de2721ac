"""Models cross Flower packed (one array per dtype) and arrive bit-identical."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedctr.federation.grid import ResponsiveGrid
from fedctr.federation.packing import (
    LAYOUT_SUFFIX,
    PackingError,
    is_packed,
    pack_content,
    packing_mod,
    unpack_content,
)
from fedctr.models import build_model, builtin_spec_path, load_spec, model_config
from fedctr.privacy import wire as P
from fedctr.privacy.wire import ErrorCode


def _deepfm_arrays() -> ArrayRecord:
    model = build_model(load_spec(builtin_spec_path("demo")), model_config("deepfm"))
    return ArrayRecord(model.state_dict())


def _mixed_arrays() -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord(
        {
            "w": Array(rng.normal(size=(3, 4)).astype(np.float32)),
            "steps": Array(np.array([7], dtype=np.int64)),
            "b": Array(rng.normal(size=(4,)).astype(np.float32)),
            "empty": Array(np.zeros((0, 2), dtype=np.float32)),
            "scalar": Array(np.array(2.5, dtype=np.float64)),
        }
    )


def _same(a: ArrayRecord, b: ArrayRecord) -> bool:
    return list(a.keys()) == list(b.keys()) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].data == b[k].data for k in a
    )


def test_a_packed_model_unpacks_to_the_same_bytes_names_order_and_dtypes() -> None:
    for arrays in (_deepfm_arrays(), _mixed_arrays()):
        content = RecordDict({P.ARRAYS: arrays, P.CONFIG: ConfigRecord({"a": 1})})
        packed = pack_content(content)
        assert is_packed(packed)
        assert len(packed[P.ARRAYS]) == len({arrays[k].dtype for k in arrays})
        restored = unpack_content(packed)
        assert list(restored.keys()) == [P.ARRAYS, P.CONFIG]
        assert _same(restored[P.ARRAYS], arrays)
        assert restored[P.CONFIG]["a"] == 1


def test_packing_cuts_the_objects_flower_moves_per_message(received) -> None:
    content = RecordDict({P.ARRAYS: _deepfm_arrays(), P.CONFIG: ConfigRecord({"a": 1})})
    plain = get_all_nested_objects(received(content))
    packed = get_all_nested_objects(received(pack_content(content)))
    assert len(plain) >= 3 * len(packed) - 3  # 24 -> 7 for the demo DeepFM


def test_single_array_records_and_content_without_layouts_pass_unchanged() -> None:
    one = ArrayRecord({"w": Array(np.ones(3, dtype=np.float32))})
    content = RecordDict({P.ARRAYS: one, P.METRICS: MetricRecord({"x": 1.0})})
    assert not is_packed(pack_content(content))
    assert unpack_content(content) is content


def test_byte_swapped_or_structured_arrays_travel_unpacked_and_unchanged() -> None:
    for odd in (
        np.arange(3, dtype=">f4"),
        np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")]),
    ):
        arrays = ArrayRecord({"odd": Array(odd), "w": Array(np.ones(4, dtype=np.float32))})
        sent = pack_content(RecordDict({P.ARRAYS: arrays}))
        assert not is_packed(sent) and _same(sent[P.ARRAYS], arrays)


@pytest.mark.parametrize(
    ("corrupt", "says"),
    [
        (lambda c: c[P.ARRAYS + LAYOUT_SUFFIX].__setitem__("format", "v9"), "unknown packing"),
        (lambda c: c[P.ARRAYS + LAYOUT_SUFFIX].__setitem__("shapes", "[[1]]"), "shapes"),
        (lambda c: c[P.ARRAYS].__delitem__("<f4"), "do not match"),
        (
            lambda c: c[P.ARRAYS].__setitem__("<f4", Array(np.ones(5, dtype=np.float32))),
            "too short",
        ),
        (
            lambda c: c[P.ARRAYS].__setitem__("<f4", Array(np.ones(10**5, dtype=np.float32))),
            "unnamed values",
        ),
        (lambda c: c.__delitem__(P.ARRAYS), "not in the message"),
        # hostile layouts: wrong types, bool "ints", sizes that would overflow int64
        (lambda c: c[P.ARRAYS + LAYOUT_SUFFIX].__setitem__("names", 5), "list of strings"),
        (
            lambda c: c[P.ARRAYS + LAYOUT_SUFFIX].__setitem__(
                "shapes", "[[true,true],[4],[0,2],[],[1]]"
            ),
            "shapes",
        ),
        (
            lambda c: c[P.ARRAYS + LAYOUT_SUFFIX].__setitem__(
                "shapes", "[[1000000000000000000000000000000],[4],[0,2],[],[1]]"
            ),
            "too short",
        ),
        # hostile array bytes: not an .npy payload, or another serialisation
        (
            lambda c: c[P.ARRAYS].__setitem__(
                "<f4", Array(dtype="float32", shape=(3,), stype="numpy.ndarray", data=b"junk")
            ),
            "unreadable",
        ),
        (
            lambda c: c[P.ARRAYS].__setitem__(
                "<f4", Array(dtype="float32", shape=(3,), stype="torch", data=b"junk")
            ),
            "unreadable",
        ),
    ],
)
def test_a_corrupt_packed_record_is_a_clear_packing_error(corrupt, says: str) -> None:
    packed = pack_content(RecordDict({P.ARRAYS: _mixed_arrays()}))
    corrupt(packed)
    with pytest.raises(PackingError, match=says):
        unpack_content(packed)


def test_the_client_mod_answers_packed_only_when_asked_packed(received) -> None:
    arrays = _mixed_arrays()
    seen: list[ArrayRecord] = []

    def handler(msg: Message, _context: Context) -> Message:
        seen.append(msg.content[P.ARRAYS])
        return Message(RecordDict({P.ARRAYS: msg.content[P.ARRAYS]}), reply_to=msg)

    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    packed_reply = packing_mod(
        received(pack_content(RecordDict({P.ARRAYS: arrays}))), context, handler
    )
    assert _same(seen[-1], arrays) and is_packed(packed_reply.content)
    plain_reply = packing_mod(received(RecordDict({P.ARRAYS: arrays})), context, handler)
    assert not is_packed(plain_reply.content) and _same(plain_reply.content[P.ARRAYS], arrays)

    broken = pack_content(RecordDict({P.ARRAYS: arrays}))
    broken[P.ARRAYS + LAYOUT_SUFFIX]["format"] = "v9"
    refused = packing_mod(received(broken), context, handler)
    assert refused.has_error() and refused.error.code == ErrorCode.PACKING
    assert len(seen) == 2  # the handler never saw the unreadable message


class EchoGrid:
    """Flower's grid stand-in: every pushed message is answered by ``answer``."""

    def __init__(self, answer, received) -> None:
        self.answer = answer
        self.received = received
        self.pushed: list[Message] = []

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        self.pushed = list(messages)
        return [f"m{i}" for i in range(len(self.pushed))]

    def pull_messages(self, ids: Iterable[str]) -> list[Message]:
        return [
            self.received(self.answer(self.pushed[int(i[1:])]), src=int(i[1:]) + 1, reply_to=i)
            for i in ids
        ]


def test_the_server_grid_sends_packed_and_hands_strategies_named_tensors(received) -> None:
    arrays = _deepfm_arrays()
    grid = ResponsiveGrid(EchoGrid(lambda sent: sent.content, received))  # type: ignore[arg-type]
    to_partners = [received(RecordDict({P.ARRAYS: arrays}), reply_to=f"p{i}") for i in range(3)]
    replies = list(grid.send_and_receive(to_partners))
    pushed = [m.content[P.ARRAYS] for m in grid.grid.pushed]
    assert all(is_packed(m.content) for m in grid.grid.pushed)
    assert pushed[0] is pushed[1] is pushed[2]  # packed once, shared: one model in memory
    assert len(replies) == 3 and all(_same(r.content[P.ARRAYS], arrays) for r in replies)
    weights = replies[0].content[P.ARRAYS].to_torch_state_dict()
    assert torch.equal(
        weights["factors.embedding.weight"],
        arrays.to_torch_state_dict()["factors.embedding.weight"],
    )


def test_a_reply_with_unreadable_arrays_becomes_that_partners_error_reply(received) -> None:
    def corrupt(sent: Message) -> RecordDict:
        content = sent.content
        content[P.ARRAYS + LAYOUT_SUFFIX]["shapes"] = "nonsense"
        return content

    grid = ResponsiveGrid(EchoGrid(corrupt, received))  # type: ignore[arg-type]
    (reply,) = grid.send_and_receive([received(RecordDict({P.ARRAYS: _mixed_arrays()}))])
    assert reply.has_error() and reply.error.code == ErrorCode.PACKING
    assert reply.error.reason == "problem=unreadable-arrays"  # the detail is logged only
