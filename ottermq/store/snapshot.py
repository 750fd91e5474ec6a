"""The projection as snapshot bytes: durable entities as events, and each durable queue's message index.

Strategy: entities (users, vhosts, permissions, exchanges, queues, bindings) are few and are written as
the events that rebuild them (`Broker.durable_events`), in the generic record encoding. Messages are many:
per durable queue, five packed arrays (id u64, segment u32, offset u32, index u32, flags u8) in log order,
built with list comprehensions and `array.tobytes`, so a million messages serialize in a fraction of a
second and cost ~21 bytes each before compression. Contents are not in the snapshot: they stay in the
log segments, which space reclamation keeps while a message lives.

Layout: `OTQS` magic, `<HB` version and flags (bit 0: taken at a clean shutdown), `<I` event count, each
event `<BI` type + length + payload; `<I` queue count, each queue `<BBI` vhost length, name length,
message count, the names, then the five arrays and (version 2) a sixth: each entry's absolute TTL
deadline, u64 ms since the epoch (0: none), and (version 3) a seventh: each message's body length, i32
(-1: not known, a message restored from an older snapshot and not read since), so that
x-max-length-bytes counts a backlog without reading its bodies, and (version 4) the delivery state of a
queue that counts deliveries (delivery_limit.py): `<I` count n of its messages with a failed-delivery
count or out to a consumer, then their ids (u64) and counts (u32, the top bit set for one out: delivered,
logged as such, not back). Versions 1 to 3 are still read (no counts).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

from ottermq.broker.message import QueueEntry
from ottermq.store.codec import (
    INDEX_MASK,
    OFFSET_MASK,
    OFFSET_SHIFT,
    SEGMENT_SHIFT,
    CodecError,
    decode,
    encode,
)

MAGIC: Final = b"OTQS"
VERSION: Final = 4
_VERSIONS: Final = (1, 2, 3, 4)
FLAG_CLEAN: Final = 1
ENTRY_REDELIVERED: Final = 1
COUNT_OUT: Final = 1 << 31  # in a version 4 count: the message was out to a consumer

_HEAD: Final = struct.Struct("<4sHB")
_COUNT: Final = struct.Struct("<I")
_EVENT_HEAD: Final = struct.Struct("<BI")
_QUEUE_HEAD: Final = struct.Struct("<BBI")
_LITTLE: Final = sys.byteorder == "little"


@dataclass(slots=True)
class QueueIndex:
    """The logged messages of one durable queue, as stored: parallel arrays in log order."""

    vhost: str
    queue: str
    ids: array[int] = field(default_factory=lambda: array("Q"))
    segments: array[int] = field(default_factory=lambda: array("I"))
    offsets: array[int] = field(default_factory=lambda: array("I"))
    indexes: array[int] = field(default_factory=lambda: array("I"))
    flags: array[int] = field(default_factory=lambda: array("B"))
    deadlines: array[int] | None = None  # None: a version 1 snapshot, which kept none
    sizes: array[int] | None = None  # body lengths; None: a version 1 or 2 snapshot, which kept none
    # Ids and failed-delivery counts (COUNT_OUT set: out to a consumer) of the messages with either.
    counted_ids: array[int] = field(default_factory=lambda: array("Q"))
    counts: array[int] = field(default_factory=lambda: array("I"))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class SnapshotState:
    """A decoded snapshot."""

    clean: bool
    events: list[Any]
    queues: list[QueueIndex]


_MSG_ID: Final = attrgetter("msg_id")
_DEADLINE: Final = attrgetter("deadline")
_SIZE: Final = attrgetter("size")


def index_of(
    vhost: str,
    queue: str,
    entries: Iterable[QueueEntry],
    locs_by_id: Mapping[int, int],
    delivery: Iterable[tuple[int, int, bool]] = (),
) -> QueueIndex:
    """The packed index of a queue's logged entries; `locs_by_id` is where each message lies in the log
    (the content store's); `delivery` the (id, count, out) of those with a count or out
    (`Queue.delivery_state`)."""
    listed = list(entries)
    counted = list(delivery)
    # map() with attrgetter and the mapping's own __getitem__ loop in C: a million entries at a clean stop.
    ids = list(map(_MSG_ID, listed))
    locs = list(map(locs_by_id.__getitem__, ids))
    # Plain arithmetic in comprehensions: a function call per message would double the time.
    return QueueIndex(
        vhost,
        queue,
        array("Q", ids),
        array("I", [loc >> SEGMENT_SHIFT for loc in locs]),
        array("I", [(loc >> OFFSET_SHIFT) & OFFSET_MASK for loc in locs]),
        array("I", [loc & INDEX_MASK for loc in locs]),
        array("B", [ENTRY_REDELIVERED if entry.redelivered else 0 for entry in listed]),
        array("Q", map(_DEADLINE, listed)),
        array("i", map(_SIZE, listed)),
        array("Q", [msg_id for msg_id, _count, _out in counted]),
        array("I", [count | (COUNT_OUT if out else 0) for _msg_id, count, out in counted]),
    )


def _raw(values: array[Any]) -> bytes:
    if not _LITTLE:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _load(typecode: str, data: memoryview, pos: int, count: int) -> tuple[array[Any], int]:
    values = array(typecode)
    end = pos + values.itemsize * count
    if end > len(data):
        raise CodecError("snapshot is truncated")
    values.frombytes(data[pos:end])
    if not _LITTLE:
        values.byteswap()
    return values, end


def encode_snapshot(events: Iterable[Any], queues: Iterable[QueueIndex], clean: bool) -> bytes:
    """The snapshot bytes of entity events and queue indexes."""
    parts: list[bytes] = [_HEAD.pack(MAGIC, VERSION, FLAG_CLEAN if clean else 0), b""]
    count = 0
    for event in events:
        rtype, payload = encode(event)
        parts.append(_EVENT_HEAD.pack(rtype, len(payload)))
        parts.append(payload)
        count += 1
    parts[1] = _COUNT.pack(count)
    listed = list(queues)
    parts.append(_COUNT.pack(len(listed)))
    for index in listed:
        vhost = index.vhost.encode()
        name = index.queue.encode()
        parts += (_QUEUE_HEAD.pack(len(vhost), len(name), len(index)), vhost, name)
        parts += (
            _raw(index.ids),
            _raw(index.segments),
            _raw(index.offsets),
            _raw(index.indexes),
            index.flags.tobytes(),
            _raw(index.deadlines if index.deadlines is not None else array("Q", bytes(8 * len(index)))),
            _raw(index.sizes if index.sizes is not None else array("i", [-1]) * len(index)),
            _COUNT.pack(len(index.counted_ids)),
            _raw(index.counted_ids),
            _raw(index.counts),
        )
    return b"".join(parts)


def decode_snapshot(state: bytes) -> SnapshotState:
    """A snapshot's bytes back (CodecError when they are not an OtterMQ snapshot of a known version)."""
    data = memoryview(state)
    try:
        magic, version, flags = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise CodecError("not an OtterMQ snapshot (bad magic)")
        if version not in _VERSIONS:
            raise CodecError(f"unsupported OtterMQ snapshot version {version}")
        pos = _HEAD.size
        (count,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        events = []
        for _ in range(count):
            rtype, length = _EVENT_HEAD.unpack_from(data, pos)
            pos += _EVENT_HEAD.size
            events.append(decode(rtype, data[pos : pos + length]))
            pos += length
        (count,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        queues = []
        for _ in range(count):
            vlen, qlen, size = _QUEUE_HEAD.unpack_from(data, pos)
            pos += _QUEUE_HEAD.size
            vhost = str(data[pos : pos + vlen], "utf-8")
            pos += vlen
            queue = str(data[pos : pos + qlen], "utf-8")
            pos += qlen
            ids, pos = _load("Q", data, pos, size)
            segments, pos = _load("I", data, pos, size)
            offsets, pos = _load("I", data, pos, size)
            indexes, pos = _load("I", data, pos, size)
            marks, pos = _load("B", data, pos, size)
            deadlines = None
            if version >= 2:
                deadlines, pos = _load("Q", data, pos, size)
            sizes = None
            if version >= 3:
                sizes, pos = _load("i", data, pos, size)
            index = QueueIndex(vhost, queue, ids, segments, offsets, indexes, marks, deadlines, sizes)
            if version >= 4:
                (counted,) = _COUNT.unpack_from(data, pos)
                pos += _COUNT.size
                index.counted_ids, pos = _load("Q", data, pos, counted)
                index.counts, pos = _load("I", data, pos, counted)
            queues.append(index)
    except struct.error as exc:
        raise CodecError(f"snapshot is truncated: {exc}") from None
    return SnapshotState(bool(flags & FLAG_CLEAN), events, queues)
