"""Delivery limit (x-delivery-limit): poison messages are dead-lettered or dropped instead of looping.

Strategy: as RabbitMQ's quorum queues do (OtterMQ offers it on every queue), each return of a delivered
message to the queue (reject/nack with requeue, channel closed with it unacknowledged) counts one failed
delivery. While the count is within the limit the message is redelivered with an `x-delivery-count`
header holding the count; once it exceeds the limit the message leaves the queue (dead-lettered with
reason `delivery_limit` when the queue has a dead-letter exchange). Counts are kept per queue entry,
only for entries that came back at least once, so the common path costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from ottermq.broker.deadletter import fresh_properties
from ottermq.broker.message import Message, QueueEntry


class DeliveryCounts:
    """Failed-delivery counts of the entries of one queue, by entry seq."""

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[int, int] = {}

    def returned(self, entries: Iterable[QueueEntry]) -> tuple[list[QueueEntry], list[QueueEntry]]:
        """Count one failed delivery for each returned entry: (entries to requeue, entries over the limit).

        Requeued entries are given a message copy whose headers carry the new x-delivery-count.
        """
        counts = self._counts
        keep: list[QueueEntry] = []
        over: list[QueueEntry] = []
        for entry in entries:
            count = counts.get(entry.seq, 0) + 1
            if count > self.limit:
                counts.pop(entry.seq, None)
                over.append(entry)
                continue
            counts[entry.seq] = count
            entry.message = with_delivery_count(entry.message, count)
            keep.append(entry)
        return keep, over

    def __len__(self) -> int:
        """How many entries have a count."""
        return len(self._counts)

    def forget(self, entries: Iterable[QueueEntry]) -> None:
        """Entries left the queue for good."""
        counts = self._counts
        if counts:
            for entry in entries:
                counts.pop(entry.seq, None)


def with_delivery_count(message: Message, count: int) -> Message:
    """A copy of `message` whose headers say x-delivery-count = `count` (the log identity is kept)."""
    headers = dict(message.headers or {})
    headers["x-delivery-count"] = count
    copy = Message(
        message.exchange,
        message.routing_key,
        fresh_properties(message.properties, headers=headers),
        message.body,
        message.persistent,
    )
    copy.msg_id = message.msg_id
    copy.loc = message.loc
    return copy
