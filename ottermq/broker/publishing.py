"""Publishing into a virtual host: log, apply, then hand back the queue entries to make ready.

Strategy: a persistent message routed to a durable queue is journaled first, then applied exactly as a
replay applies it (`apply.apply_published`): its content joins the content store under its log id and each
durable queue indexes an entry. Non-durable queues, and transient messages, get entries of a content held
in memory. Whether an entry becomes ready at once or once its record is durable (confirms, transactions)
is the caller's choice; this is the only place that decides what is logged for a publish.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ottermq.amqp.constants import (
    INTERNAL_ERROR,
)
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.properties import FLAG_EXPIRATION, FLAG_PRIORITY
from ottermq.broker.apply import Placed, apply_published
from ottermq.broker.events import (
    MessagePublished,
    TxCommitted,
    message_id,
)
from ottermq.broker.message import Message, QueueEntry, message_priority
from ottermq.broker.queue import Queue
from ottermq.broker.topology import Topology
from ottermq.broker.ttl import now_ms, properties_ttl

# The priority and expiration flags, in the first octet of raw content-header properties.
_TTL_OR_PRIORITY: Final = (FLAG_PRIORITY | FLAG_EXPIRATION) >> 8


class Publishing(Topology):
    """Publishing on top of the model: what a publish logs, applies and hands back."""

    def publish(self, message: Message, queues: Sequence[Queue]) -> tuple[int, list[Placed]]:
        """A message routed to `queues` (outside a transaction): logged when persistent and one of them
        is durable, and applied (`apply_published`) as a replay would; then added to the others. Returns
        the position to wait for before confirming (0: nothing logged; -1: the journal refuses, nothing
        was logged, and the message was added as a transient one) and each queue's entry, which the
        caller makes ready (`Queue.enqueue`) at once, or once the position is durable."""
        if message.persistent:
            logged = self._log_publish(message, queues)
            if logged is not None:
                return logged
            position = -1 if self.journal.failed and any(queue.durable for queue in queues) else 0
        else:
            position = 0
        msg_id = self.contents.put(message, len(queues))
        size = message.body_size
        properties = message.properties
        if properties and properties[0] & _TTL_OR_PRIORITY:
            ttl = properties_ttl(properties)
            priority = message_priority(properties)
            now = now_ms()
            return position, [(queue, queue.new_entry(msg_id, size, priority, now, ttl)) for queue in queues]
        # Publish time 0: a queue with x-message-ttl reads the clock itself.
        return position, [(queue, queue.new_entry(msg_id, size, 0, 0, None)) for queue in queues]

    def _log_publish(self, message: Message, queues: Sequence[Queue]) -> tuple[int, list[Placed]] | None:
        """Log and apply a persistent publish that reaches a durable queue (None: it reaches none, or the
        journal refuses); the other queues get entries of the same content."""
        durable = tuple([queue.name for queue in queues if queue.durable])
        journal = self.journal
        if not durable or journal.failed:
            return None
        properties = message.properties
        event = MessagePublished(
            self.name, durable, message.exchange, message.routing_key, properties, message.body, now_ms()
        )
        position = journal.append(event)
        msg_id = message_id(position)
        placed = apply_published(self, event, msg_id, journal.last_loc, message)
        if len(placed) < len(queues):
            others = [queue for queue in queues if not queue.durable]
            self.contents.retain(msg_id, len(others))
            ttl = properties_ttl(properties)
            priority = message_priority(properties)
            size = message.body_size
            published = event.published
            placed.extend(
                (queue, queue.new_entry(msg_id, size, priority, published, ttl)) for queue in others
            )
        return position, placed

    def publish_now(self, message: Message, queues: Sequence[Queue]) -> int:
        """`publish`, and every entry made ready at once (no confirm waits for it); the position."""
        properties = message.properties
        if not message.persistent and not (properties and properties[0] & _TTL_OR_PRIORITY):
            # The hot path (a transient message, no TTL, no priority): `publish` without the lists.
            msg_id = self.contents.put(message, len(queues))
            size = message.body_size
            for queue in queues:
                # A queue without features makes a bare entry: no call to ask it.
                queue.enqueue(
                    QueueEntry(msg_id, size)
                    if queue.features is None
                    else queue.new_entry(msg_id, size, 0, 0, None)
                )
            return 0
        position, placed = self.publish(message, queues)
        for queue, entry in placed:
            queue.enqueue(entry)
        return position

    def publish_nacked(self, placed: Iterable[Placed]) -> None:
        """Published entries that never became ready (a nacked publish, held by a confirm channel until
        its record was durable, or refused by a full queue) leave: a logged one's removal is logged, so
        that the record, should it still be written (a full disk resumes), does not bring the message
        back after a restart; the others give their content reference back."""
        for queue, entry in placed:
            if queue.durable and not queue.deleted and entry.msg_id > 0:
                self._messages_removed(queue, [entry.msg_id], "nacked")
            else:
                self.contents.release(entry.msg_id)

    def begin_tx(self) -> None:
        """tx.commit starts: removals are collected, to be logged with the publishes in one record."""
        self._tx_events = []

    def end_tx(self, publishes: Sequence[tuple[Message, Sequence[Queue]]]) -> tuple[int, list[list[Placed]]]:
        """tx.commit's work is done: log the collected removals and the persistent publishes to durable
        queues as one TxCommitted record, and apply its publishes; the position to wait for before
        tx.commit-ok (0 when nothing was logged) and each publish's entries, to be made ready when it
        is durable. 541 when the journal has failed and there is something to log."""
        events = self._tx_events or []
        self._tx_events = None
        logged: list[tuple[int, MessagePublished]] = []
        published = now_ms()
        for index, (message, queues) in enumerate(publishes):
            if message.persistent:
                durable = tuple([queue.name for queue in queues if queue.durable])
                if durable:
                    event = MessagePublished(
                        self.name,
                        durable,
                        message.exchange,
                        message.routing_key,
                        message.properties,
                        message.body,
                        published,
                    )
                    logged.append((index, event))
        position = 0
        placed: list[list[Placed]] = []
        journal = self.journal
        if events or logged:
            if journal.failed:
                raise AMQPConnectionError(
                    INTERNAL_ERROR, "INTERNAL_ERROR - the journal has failed: the transaction was not logged"
                )
            position = journal.append(TxCommitted((*events, *[event for _, event in logged])))
        loc = journal.last_loc
        by_index = dict(logged)
        number = 0
        for index, (message, queues) in enumerate(publishes):
            logged_event = by_index.get(index)
            if logged_event is None:
                placed.append(self.publish(message, queues)[1])
                continue
            msg_id = message_id(position, number)
            entries = apply_published(self, logged_event, msg_id, loc + number, message)
            number += 1
            others = [queue for queue in queues if not queue.durable]
            if others:
                self.contents.retain(msg_id, len(others))
                ttl = properties_ttl(message.properties)
                priority = message_priority(message.properties)
                entries.extend(
                    (queue, queue.new_entry(msg_id, message.body_size, priority, published, ttl))
                    for queue in others
                )
            placed.append(entries)
        return position, placed
