"""Replaying into a broker: snapshot queue indexes and log records, through the broker's own apply path.

Strategy: shared by the store's recovery and by the `memento replay` decoder, so both build the same
projection. Records go to `apply.apply_record`, the code the live broker runs after each append; a
snapshot's queue index becomes the same entries and content-store references a replay of its publishes
would have made, in bulk. Contents stay in the log until a delivery asks for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from memento.log import Log
from memento.record import FLAG_RELOCATED
from ottermq.broker.apply import apply_record
from ottermq.broker.message import QueueEntry, share_size
from ottermq.store.codec import (
    OFFSET_SHIFT,
    PUBLISH_TYPES,
    SEGMENT_SHIFT,
    CodecError,
    decode,
    decode_publish_index,
    pack_loc,
)
from ottermq.store.snapshot import COUNT_OUT, ENTRY_REDELIVERED, QueueIndex, decode_snapshot

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

_CHUNK: Final = 1 << 16  # entries restored per bulk call


class ReplayError(CodecError):
    """A record whose checksum is good but whose payload cannot be decoded or applied; the text names its
    LSN, type, segment and offset, and so do `lsn`, `segment` (seq) and `offset` (salvage cuts there)."""

    def __init__(
        self, message: str, *, lsn: int = -1, segment: int = -1, offset: int = -1, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.lsn = lsn
        self.segment = segment
        self.offset = offset
        self.reason = reason


def replay_log(broker: Broker, memento_log: Log) -> tuple[bool, int, int]:
    """Load the log's snapshot (if any) into `broker`, then apply every record after it; (whether the
    snapshot was taken at a clean stop, its LSN or 0, how many records were replayed). Copies made by
    compaction (FLAG_RELOCATED) are skipped: the snapshot before the copy holds their messages, at their
    original places."""
    clean = False
    snapshot_lsn = 0
    snapshot = memento_log.snapshot
    if snapshot is not None:
        state = decode_snapshot(snapshot.state)
        clean = state.clean
        for event in state.events:
            broker.apply(event)
        load_queues(broker, state.queues)
        snapshot_lsn = snapshot.lsn
    replayed = 0
    for record in memento_log.replay():
        replayed += 1
        if record.flags & FLAG_RELOCATED:
            continue
        position = record.position
        rtype = record.type
        try:
            if rtype in PUBLISH_TYPES:
                event, size = decode_publish_index(record.payload, rtype)
            else:
                event, size = decode(rtype, record.payload), -1
            apply_record(broker, event, record.lsn, pack_loc(position.segment, position.offset), size)
        except Exception as exc:  # whatever a record that passed its checksum can still make go wrong
            reason = f"{type(exc).__name__}: {exc}"
            raise ReplayError(
                f"record LSN {record.lsn} (type {rtype}) at segment {position.segment} offset "
                f"{position.offset} cannot be applied: {reason}",
                lsn=record.lsn,
                segment=position.segment,
                offset=position.offset,
                reason=reason,
            ) from exc
    return clean, snapshot_lsn, replayed


def apply_replicated(
    broker: Broker, lsn: int, rtype: int, flags: int, payload: bytes | memoryview, loc: int
) -> None:
    """Apply one record a follower just appended (at `loc` in its own log) to its projection, as replay
    does: a compaction copy (FLAG_RELOCATED) changes nothing, the follower keeps its original. A publish
    is decoded from `payload` as it is (what it keeps is copied), other records from a copy of it."""
    if flags & FLAG_RELOCATED:
        return
    if rtype in PUBLISH_TYPES:
        event, size = decode_publish_index(payload, rtype)
    else:
        event, size = decode(rtype, bytes(payload)), -1
    apply_record(broker, event, lsn, loc, size)


def load_queues(broker: Broker, indexes: Iterable[QueueIndex]) -> None:
    """Restore the message indexes of a snapshot into the (already declared) durable queues."""
    contents = broker.contents
    for index in indexes:
        vhost = broker.vhosts.get(index.vhost)
        queue = vhost.queues.get(index.queue) if vhost is not None else None
        if vhost is None or queue is None or not queue.durable:
            continue
        # Comprehensions over the packed arrays and one bulk restore per chunk: a million messages come
        # back in under a second (a function call per message costs a third more), and the temporary
        # lists stay small.
        ids, segments, offsets, numbers, marks = (
            index.ids,
            index.segments,
            index.offsets,
            index.indexes,
            index.flags,
        )
        count = len(ids)
        deadlines = index.deadlines if index.deadlines is not None else [0] * count
        # Body sizes are unknown (-1) in an older snapshot: learnt when first needed (Queue.recovered).
        sizes = index.sizes if index.sizes is not None else [-1] * count
        for start in range(0, count, _CHUNK):
            end = start + _CHUNK
            # One int object per id, shared by the content store's map, the queue's index and the entry.
            chunk_ids = ids[start:end].tolist()
            locs = [
                (segment << SEGMENT_SHIFT) | (offset << OFFSET_SHIFT) | number
                for segment, offset, number in zip(
                    segments[start:end], offsets[start:end], numbers[start:end], strict=True
                )
            ]
            contents.add_logged_many(chunk_ids, locs)
            chunk_sizes = sizes[start:end]
            shared = {size: share_size(size) for size in set(chunk_sizes)}  # one int per distinct size
            # The priority is not kept in a snapshot (-1): a priority queue reads it when restoring.
            entries = [
                QueueEntry(msg_id, shared[size], -1, due, seq, flags & ENTRY_REDELIVERED != 0)
                for msg_id, size, due, flags, seq in zip(
                    chunk_ids,
                    chunk_sizes,
                    deadlines[start:end],
                    marks[start:end],
                    queue.seqs(len(chunk_ids)),
                    strict=True,
                )
            ]
            queue.restore_index(chunk_ids, entries)
        if len(index.counted_ids):
            queue.restore_delivery(
                (msg_id, count & ~COUNT_OUT, count & COUNT_OUT != 0)
                for msg_id, count in zip(index.counted_ids, index.counts, strict=True)
            )
