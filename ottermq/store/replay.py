"""Replaying into a broker: snapshot queue indexes and log records, through the broker's own `apply`.

Strategy: shared by the store's recovery and by the `memento replay` decoder, so both build the same
projection. Entity and access events go to `Broker.apply`; a publish becomes a `StoredMessage` named by
its record (id from the LSN and the publish's index, loc from the record's place) that joins its durable
target queues without its content, which stays in the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ottermq.broker.events import MessagePublished, TxCommitted, message_id
from ottermq.broker.limits_queue import ensure_features
from ottermq.broker.message import ContentSource, Message, StoredMessage
from ottermq.store.codec import OFFSET_SHIFT, SEGMENT_SHIFT
from ottermq.store.snapshot import ENTRY_REDELIVERED, QueueIndex

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker

_CHUNK: Final = 1 << 16  # messages restored per bulk call


def load_queues(broker: Broker, indexes: Iterable[QueueIndex], source: ContentSource) -> None:
    """Restore the message indexes of a snapshot into the (already declared) durable queues."""
    for index in indexes:
        vhost = broker.vhosts.get(index.vhost)
        queue = vhost.queues.get(index.queue) if vhost is not None else None
        if vhost is None or queue is None or not queue.durable:
            continue
        # Comprehensions over the packed arrays and one bulk restore per chunk: a million messages come
        # back in under a second (a function call per message costs a third more), and the temporary
        # lists stay small.
        ids, segments, offsets, numbers, marks, deadlines, sizes = (
            index.ids,
            index.segments,
            index.offsets,
            index.indexes,
            index.flags,
            index.deadlines,
            index.sizes,
        )
        if deadlines is not None and any(deadlines):
            ensure_features(queue, vhost)  # a message's own expiration made it a FeatureQueue live too
        else:
            deadlines = None
        for start in range(0, len(ids), _CHUNK):
            end = start + _CHUNK
            locs = [
                (segment << SEGMENT_SHIFT) | (offset << OFFSET_SHIFT) | number
                for segment, offset, number in zip(
                    segments[start:end], offsets[start:end], numbers[start:end], strict=True
                )
            ]
            # Body sizes are unknown (-1) in an older snapshot: learnt when first needed (limits_queue).
            messages: list[Message] = (
                [StoredMessage(msg_id, loc, source) for msg_id, loc in zip(ids[start:end], locs, strict=True)]
                if sizes is None
                else [
                    StoredMessage(msg_id, loc, source, body_size)
                    for msg_id, loc, body_size in zip(ids[start:end], locs, sizes[start:end], strict=True)
                ]
            )
            queue.restore_many(
                messages,
                [flags & ENTRY_REDELIVERED != 0 for flags in marks[start:end]],
                None if deadlines is None else deadlines[start:end].tolist(),
            )


def apply_record(
    broker: Broker, event: Any, lsn: int, loc: int, source: ContentSource, body_size: int = -1
) -> None:
    """Apply the event of the record at `lsn` (lying at `loc`) to `broker`. A publish decoded without
    its body (`decode_publish_index`) comes with the body's length as `body_size`."""
    kind = type(event)
    if kind is MessagePublished:
        vhost = broker.vhosts.get(event.vhost)
        if vhost is not None:
            size = body_size if body_size >= 0 else len(event.body)
            vhost.apply_published(event, StoredMessage(message_id(lsn), loc, source, size))
    elif kind is TxCommitted:
        index = 0
        for inner in event.events:
            if type(inner) is MessagePublished:
                vhost = broker.vhosts.get(inner.vhost)
                if vhost is not None:
                    vhost.apply_published(
                        inner, StoredMessage(message_id(lsn, index), loc + index, source, len(inner.body))
                    )
                index += 1
            else:
                broker.apply(inner)
    else:
        broker.apply(event)
