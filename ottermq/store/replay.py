"""Replaying into a broker: snapshot queue indexes and log records, through the broker's own `apply`.

Strategy: shared by the store's recovery and by the `memento replay` decoder, so both build the same
projection. Entity and access events go to `Broker.apply`; a publish becomes a `StoredMessage` named by
its record (id from the LSN and the publish's index, loc from the record's place) that joins its durable
target queues without its content, which stays in the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ottermq.broker.events import MessagePublished, TxCommitted, message_id
from ottermq.broker.message import ContentSource, StoredMessage
from ottermq.store.codec import pack_loc
from ottermq.store.snapshot import ENTRY_REDELIVERED, QueueIndex

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker


def load_queues(broker: Broker, indexes: Iterable[QueueIndex], source: ContentSource) -> None:
    """Restore the message indexes of a snapshot into the (already declared) durable queues."""
    for index in indexes:
        vhost = broker.vhosts.get(index.vhost)
        queue = vhost.queues.get(index.queue) if vhost is not None else None
        if queue is None or not queue.durable:
            continue
        restore = queue.restore
        for msg_id, segment, offset, number, flags in zip(
            index.ids, index.segments, index.offsets, index.indexes, index.flags, strict=True
        ):
            restore(StoredMessage(msg_id, pack_loc(segment, offset, number), source),
                    bool(flags & ENTRY_REDELIVERED))


def apply_record(broker: Broker, event: Any, lsn: int, loc: int, source: ContentSource) -> None:
    """Apply the event of the record at `lsn` (lying at `loc`) to `broker`."""
    kind = type(event)
    if kind is MessagePublished:
        vhost = broker.vhosts.get(event.vhost)
        if vhost is not None:
            vhost.apply_published(event, StoredMessage(message_id(lsn), loc, source))
    elif kind is TxCommitted:
        index = 0
        for inner in event.events:
            if type(inner) is MessagePublished:
                vhost = broker.vhosts.get(inner.vhost)
                if vhost is not None:
                    vhost.apply_published(inner, StoredMessage(message_id(lsn, index), loc + index, source))
                index += 1
            else:
                broker.apply(inner)
    else:
        broker.apply(event)
