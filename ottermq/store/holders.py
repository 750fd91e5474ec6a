"""Which queues keep which log segments, and how much: the OtterMQ side of `memento replay`'s pins.

Strategy: after a replay (`ottermq.store.decoder`), every message a durable queue still holds has its
location in the content store, as in the live broker; compaction copies met on the way move locations
to the copies, as `DurableStore.reclaim` does live. Grouped by queue and segment, they are the
`memento.pins.Holder`s that keep segments on disk. A queue's oldest message is dated by reading its record
(format version 3's record time, else the publish time the record carries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memento.inspect_decoders import RecordView
from memento.pins import Holder, ReadRecord
from memento.record import FLAG_ORIGIN, ORIGIN, Record, original
from ottermq.broker.events import MESSAGE_INDEX_BITS
from ottermq.store.codec import (
    INDEX_MASK,
    PUBLISH_TYPES,
    RT_TX,
    SEGMENT_SHIFT,
    inner_records,
    pack_loc,
    publish_payload,
    record_key,
    unpack_loc,
)

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

__all__ = [
    "Holder",
    "ReadRecord",
    "follow_copies",
    "holder_name",
    "note_copy",
    "publish_time",
    "queue_holders",
    "queue_stats",
    "record_loc",
]


def record_loc(record: RecordView) -> int:
    """The loc of a replayed record (memento's records have a position; a bare RecordView may not: 0)."""
    position = getattr(record, "position", None)
    return pack_loc(position.segment, position.offset) if position is not None else 0


def note_copy(copies: dict[int, int], record: RecordView, loc: int) -> None:
    """A compaction copy replayed at `loc`: its original's LSN now lies there (the newest copy wins)."""
    if record.flags & FLAG_ORIGIN and loc:
        copies[ORIGIN.unpack_from(record.payload)[0]] = loc


def holder_name(vhost: str, queue: str) -> str:
    """How a queue is named as a holder of log segments."""
    return f"queue {queue!r}" if vhost == "/" else f"queue {queue!r} in vhost {vhost!r}"


def publish_time(record: Record, index: int) -> int:
    """Wall-clock µs of the `index`-th publish of `record`: the record's time, else the logged publish
    time (0 when neither is known)."""
    if record.time:
        return record.time
    _lsn, payload = original(record)
    if record.type in PUBLISH_TYPES:
        return publish_payload(record.type, payload)[0] * 1000
    if record.type == RT_TX:
        found = 0
        for inner_type, inner in inner_records(payload):
            if inner_type in PUBLISH_TYPES:
                if found == index:
                    return publish_payload(inner_type, inner)[0] * 1000
                found += 1
    return 0


def follow_copies(broker: Broker, copies: dict[int, int]) -> None:
    """Point the messages whose publish compaction copied (origin LSN -> the copy's record loc) at the
    copy, as the live store does after a reclaim."""
    if not copies:
        return
    contents = broker.contents
    moved: dict[int, int] = {}
    for msg_id, loc in contents.locations.items():
        new = copies.get(msg_id >> MESSAGE_INDEX_BITS)
        if new is not None and loc:
            moved[record_key(loc)] = new
    contents.relocate(moved, INDEX_MASK)
    copies.clear()


def queue_holders(broker: Broker, read: ReadRecord) -> list[Holder]:
    """Per durable queue and segment: the messages kept there, their body bytes, the oldest."""
    locs = broker.contents.locations
    # (holder, segment) -> [messages, bytes, oldest id, its loc]
    found: dict[tuple[str, int], list[int]] = {}
    oldest: dict[str, tuple[int, int]] = {}  # holder -> (oldest id, loc) over all its segments
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            if not queue.durable or not queue.logged_count:
                continue
            name = holder_name(vhost.name, queue.name)
            for entry in queue.logged_entries():
                msg_id = entry.msg_id
                loc = locs.get(msg_id, 0)
                key = (name, loc >> SEGMENT_SHIFT)
                slot = found.get(key)
                if slot is None:
                    found[key] = [1, max(entry.size, 0), msg_id, loc]
                else:
                    slot[0] += 1
                    slot[1] += max(entry.size, 0)
                    if msg_id < slot[2]:
                        slot[2], slot[3] = msg_id, loc
                first = oldest.get(name)
                if first is None or msg_id < first[0]:
                    oldest[name] = (msg_id, loc)
    dated: dict[str, int] = {}
    for name, (_msg_id, loc) in oldest.items():
        segment, offset, index = unpack_loc(loc)
        record = read(segment, offset) if loc else None
        dated[name] = publish_time(record, index) if record is not None else 0
    holders = []
    for (name, segment), (count, size, msg_id, _loc) in sorted(found.items(), key=lambda kv: kv[0][1]):
        is_oldest = oldest[name][0] == msg_id
        holders.append(
            Holder(name, segment, count, size, msg_id >> MESSAGE_INDEX_BITS, dated[name] if is_oldest else 0)
        )
    return holders


def queue_stats(broker: Broker, vhost_name: str, queue_name: str) -> dict[str, Any]:
    """What a replay adds to a queue's entry: body bytes held, messages delivered and returned before
    (redelivered), the oldest message's publish LSN. Deliveries are not logged, so ready and unacked are
    not known: every message counted is ready or delivered and not acked yet."""
    queue = broker.vhosts[vhost_name].queues[queue_name]
    entries = queue.logged_entries() if queue.durable else []
    return {
        "bytes": sum(max(e.size, 0) for e in entries),
        "redelivered": sum(1 for e in entries if e.redelivered),
        "oldest_lsn": min(e.msg_id for e in entries) >> MESSAGE_INDEX_BITS if entries else None,
    }
