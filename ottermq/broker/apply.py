"""Applying logged events to the broker: the one code path shared by the live broker, replay and followers.

Strategy: every durable state change is an event (events.py). The live path appends the event to the
journal and then applies it with the functions here and in VHost (`apply` for entity and removal events);
replay (the store's recovery, `memento replay`) and a follower only apply. So the state a log rebuilds is
the state the live broker had at the same position, object for object.

A publish applies as: its content joins the content store under its log id (`message_id(lsn, index)`),
with one reference per durable target queue that exists, and each of those queues indexes a new entry
(`Queue.index`) whose deadline counts from the publish time the event carries. What is not durable is
left to the caller: making entries ready and dispatching them (live: at once, or when a confirm or a
transaction waits for durability; replay: `recovered` at the end), and a transient copy's entries in
non-durable queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ottermq.amqp.properties import FLAG_EXPIRATION, FLAG_PRIORITY
from ottermq.broker.events import Event, MessagePublished, TxCommitted, message_id
from ottermq.broker.message import Message, QueueEntry, message_priority, share_size
from ottermq.broker.queue import Queue
from ottermq.broker.ttl import now_ms, properties_ttl

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.topology import Topology

# The expiration and priority flags in the first octet of raw content-header properties.
_EXPIRATION_BIT: Final = FLAG_EXPIRATION >> 8
_PRIORITY_BIT: Final = FLAG_PRIORITY >> 8

# A queue and its entry for one message: what a publish hands back to be made ready.
Placed = tuple[Queue, QueueEntry]


def apply_published(
    vhost: Topology, event: MessagePublished, msg_id: int, loc: int, message: Message | None, size: int = -1
) -> list[Placed]:
    """Apply a publish logged as `msg_id` at `loc`: its content (`message` when in memory, else left in the
    log, `size` bytes long: -1 reads the event's body) joins each durable target queue that exists. The
    entries made, not ready yet (on replay, `message` None, none are handed back: `recovered` makes them
    ready)."""
    queues = vhost.queues
    names = event.queues
    if len(names) == 1:  # the common case, without building a list by comprehension
        queue = queues.get(names[0])
        if queue is None or not queue.durable:
            return []
        targets = [queue]
    else:
        targets = [queue for name in names if (queue := queues.get(name)) is not None and queue.durable]
        if not targets:
            return []
    published = event.published
    properties = event.properties
    flags = properties[0] if properties else 0
    # An older log kept no publish time: the queue's x-message-ttl then counts from now, and the
    # message's own expiration is not known.
    ttl = properties_ttl(properties) if published and flags & _EXPIRATION_BIT else None
    if not published:
        published = now_ms()
    priority = message_priority(properties) if flags & _PRIORITY_BIT else 0
    contents = vhost.contents
    if message is not None:
        size = message.body_size
        contents.put_logged(msg_id, message, loc, len(targets))
    else:
        size = share_size(size if size >= 0 else len(event.body))
        contents.add_logged(msg_id, loc, size, len(targets))
    placed: list[Placed] = []
    for queue in targets:
        if queue.features is None and ttl is None:
            entry = QueueEntry(msg_id, size, priority)  # what new_entry makes, without the call
        else:
            entry = queue.new_entry(msg_id, size, priority, published, ttl)
        queue.index(entry)
        if message is not None:  # only the live path makes the entries ready (replay: `recovered`)
            placed.append((queue, entry))
    return placed


def apply_record(broker: Broker, event: Event, lsn: int, loc: int, size: int = -1) -> None:
    """Apply the event of the record at `lsn` (lying at `loc`) to `broker` (replay). A publish decoded
    without its body (`codec.decode_publish_index`) comes with the body's length as `size`."""
    kind = type(event)
    if kind is MessagePublished:
        assert isinstance(event, MessagePublished)
        vhost = broker.vhosts.get(event.vhost)
        if vhost is not None:
            apply_published(vhost, event, message_id(lsn), loc, None, size)
    elif kind is TxCommitted:
        assert isinstance(event, TxCommitted)
        index = 0
        for inner in event.events:
            if type(inner) is MessagePublished:
                vhost = broker.vhosts.get(inner.vhost)
                if vhost is not None:
                    apply_published(vhost, inner, message_id(lsn, index), loc + index, None)
                index += 1
            else:
                broker.apply(inner)
    else:
        broker.apply(event)
