"""A model travels as one array per dtype, not one Flower object per tensor.

Flower 1.41 moves every ``Array`` of a message as its own objects (the array and
its chunk), each a separate HTTP request through the SuperLink: a DeepFM with 10
tensors is 24 objects per message, and on a loaded 2-core machine each request
costs 20-130 ms, so a 2.4 MB model took ~0.8 s per hop (measured with a request
trace, ``bench/bench_rounds.py``). Packed, the same message is 7 objects.

Packing is lossless (the bytes of every tensor are unchanged) and invisible to
both apps: the ServerApp's grid packs what it sends and unpacks the replies
(:mod:`fedctr.federation.grid`); the ClientApp's :func:`packing_mod` unpacks
what arrives and packs its reply only if the request was packed, so an unpacked
sender (stock Flower grid, tests calling the ClientApp directly) is answered
unpacked. Strategies, ledgers and the published model only ever see named tensors.

Wire form, for each ``ArrayRecord`` ``K`` with more than one array: ``K`` holds one
1-D array per dtype (keyed by the dtype's name) and the ``ConfigRecord``
``K + LAYOUT_SUFFIX`` lists the names, dtypes and shapes in their original order.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict

from fedctr.errors import FedctrError
from fedctr.privacy.wire import ErrorCode, ErrorReply, Problem

logger = logging.getLogger(__name__)

LAYOUT_SUFFIX = ".layout"
FORMAT = "fedctr-packed-v1"


class PackingError(FedctrError):
    """A packed record does not match its layout (corrupt or foreign message)."""


def _plain(values: np.ndarray) -> bool:
    """Native-byte-order bool/int/float: what a concatenation keeps bit-exact."""
    return values.dtype.kind in "biuf" and values.dtype.isnative


def pack_arrays(record: ArrayRecord) -> tuple[ArrayRecord, ConfigRecord] | None:
    """``record`` as one 1-D array per dtype, and the layout that restores it.

    None (send it as it is) for fewer than two arrays, or any array that is not a
    plain numeric NumPy array (other serialisations, structured or byte-swapped).
    """
    if len(record) < 2 or any(a.stype != "numpy.ndarray" for a in record.values()):
        return None
    names, dtypes, shapes = [], [], []
    groups: dict[str, list[np.ndarray]] = {}
    for name, array in record.items():
        values = array.numpy()
        if not _plain(values):
            return None
        names.append(name)
        dtypes.append(values.dtype.str)
        shapes.append(list(values.shape))
        groups.setdefault(values.dtype.str, []).append(values.ravel())
    packed = ArrayRecord()
    for dtype, parts in groups.items():
        packed[dtype] = Array.from_numpy_ndarray(np.concatenate(parts))
    layout = ConfigRecord(
        {"format": FORMAT, "names": names, "dtypes": dtypes, "shapes": json.dumps(shapes)}
    )
    return packed, layout


def _strings(layout: ConfigRecord, key: str, where: str) -> list[str]:
    values = layout.get(key)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PackingError(f"{where}: '{key}' must be a list of strings")
    return values


def _shapes(raw: object, count: int, where: str) -> list[tuple[int, ...]]:
    try:
        shapes = json.loads(str(raw))
        ok = (
            isinstance(shapes, list)
            and len(shapes) == count
            and all(
                isinstance(s, list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)
                for s in shapes
            )
        )
    except ValueError:
        ok = False
    if not ok:
        raise PackingError(f"{where}: 'shapes' must be a JSON list of {count} shapes")
    return [tuple(s) for s in shapes]


def _flat(packed: ArrayRecord, dtype: str, where: str) -> np.ndarray:
    try:
        values = packed[dtype].numpy()
    except Exception as exc:  # untrusted bytes: np.load, unknown stype, ...
        raise PackingError(f"{where}: packed array {dtype!r} is unreadable: {exc}") from exc
    if values.ndim != 1 or values.dtype.str != dtype or not _plain(values):
        raise PackingError(f"{where}: packed array {dtype!r} is not 1-D of that dtype")
    return values


def unpack_arrays(packed: ArrayRecord, layout: ConfigRecord, *, where: str) -> ArrayRecord:
    """Inverse of :func:`pack_arrays`; ``where`` names the record in errors.

    The message may come from anyone: every mismatch is a :class:`PackingError`.
    """
    if layout.get("format") != FORMAT:
        raise PackingError(f"{where}: unknown packing format {layout.get('format')!r}")
    names = _strings(layout, "names", where)
    dtypes = _strings(layout, "dtypes", where)
    if len(names) != len(dtypes) or len(set(names)) != len(names):
        raise PackingError(f"{where}: 'names' and 'dtypes' must be equally long, names unique")
    shapes = _shapes(layout.get("shapes"), len(names), where)
    if set(dtypes) != set(packed.keys()):
        raise PackingError(
            f"{where}: packed arrays {sorted(packed.keys())} do not match the layout's "
            f"dtypes {sorted(set(dtypes))}"
        )
    flat = {dtype: _flat(packed, dtype, where) for dtype in packed}
    offsets = dict.fromkeys(flat, 0)
    record = ArrayRecord()
    for name, dtype, shape in zip(names, dtypes, shapes, strict=True):
        size = math.prod(shape)  # Python ints: a hostile shape cannot overflow
        start = offsets[dtype]
        if start + size > flat[dtype].size:
            raise PackingError(f"{where}: packed {dtype!r} array too short for {name!r}")
        record[name] = Array.from_numpy_ndarray(flat[dtype][start : start + size].reshape(shape))
        offsets[dtype] = start + size
    for dtype, used in offsets.items():
        if used != flat[dtype].size:
            extra = flat[dtype].size - used
            raise PackingError(f"{where}: packed {dtype!r} array has {extra} unnamed values")
    return record


def is_packed(content: RecordDict) -> bool:
    return any(key.endswith(LAYOUT_SUFFIX) for key in content.config_records)


PackCache = dict[int, tuple[ArrayRecord, tuple[ArrayRecord, ConfigRecord] | None]]


def pack_content(content: RecordDict, cache: PackCache | None = None) -> RecordDict:
    """A copy of ``content`` with every multi-array ``ArrayRecord`` packed.

    A strategy sends the same ``ArrayRecord`` object to every partner; pass one
    ``cache`` for all messages of a push so it is packed once and shared (memory
    stays one model, not one per partner).
    """
    cache = {} if cache is None else cache
    out = RecordDict()
    for key, record in content.items():
        if not isinstance(record, ArrayRecord):
            out[key] = record
            continue
        hit = cache.get(id(record))
        if hit is None:  # the cache holds the record, so its id is not reused meanwhile
            hit = cache[id(record)] = (record, pack_arrays(record))
        if hit[1] is None:
            out[key] = record
            continue
        if key + LAYOUT_SUFFIX in content:
            raise PackingError(f"record {key!r}: {key + LAYOUT_SUFFIX!r} is already taken")
        out[key], out[key + LAYOUT_SUFFIX] = hit[1]
    return out


def unpack_content(content: RecordDict) -> RecordDict:
    """Inverse of :func:`pack_content` (content without layouts is returned as is)."""
    if not is_packed(content):
        return content
    layouts = {
        key[: -len(LAYOUT_SUFFIX)]: record
        for key, record in content.config_records.items()
        if key.endswith(LAYOUT_SUFFIX)
    }
    out = RecordDict()
    for key, record in content.items():
        if key in layouts:
            if not isinstance(record, ArrayRecord):
                raise PackingError(f"record {key!r} has a layout but is not an ArrayRecord")
            out[key] = unpack_arrays(record, layouts[key], where=f"record {key!r}")
        elif key.endswith(LAYOUT_SUFFIX) and key[: -len(LAYOUT_SUFFIX)] in layouts:
            continue
        else:
            out[key] = record
    missing = set(layouts) - set(content.keys())
    if missing:
        raise PackingError(f"layouts for records that are not in the message: {sorted(missing)}")
    return out


_UNREADABLE = ErrorReply(code=ErrorCode.PACKING, problem=Problem.UNREADABLE_ARRAYS).reason()


def packing_mod(msg: Message, context: Context, call_next: Callable[..., Message]) -> Message:
    """ClientApp mod: unpack the request; pack the reply iff the request was packed."""
    if not msg.has_content() or not is_packed(msg.content):
        return call_next(msg, context)
    try:
        msg.content = unpack_content(msg.content)
    except PackingError as exc:
        logger.warning("refusing a message with unreadable arrays: %s", exc)
        return Message(Error(code=int(ErrorCode.PACKING), reason=_UNREADABLE), reply_to=msg)
    reply = call_next(msg, context)
    if reply.has_content():
        reply.content = pack_content(reply.content)
    return reply


__all__ = [
    "LAYOUT_SUFFIX",
    "PackCache",
    "PackingError",
    "is_packed",
    "pack_arrays",
    "pack_content",
    "packing_mod",
    "unpack_arrays",
    "unpack_content",
]
