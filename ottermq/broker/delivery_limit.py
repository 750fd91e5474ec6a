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

    __slots__ = ("_counts", "always", "limit")

    def __init__(self, limit: int | None, always: bool = False) -> None:
        # None: no limit (a quorum queue without x-delivery-limit still counts, for the header).
        self.limit = limit
        # A quorum queue's deliveries all carry x-delivery-count, 0 on the first (RabbitMQ 3.10).
        self.always = always
        self._counts: dict[int, int] = {}

    def returned(self, entries: Iterable[QueueEntry]) -> tuple[list[QueueEntry], list[QueueEntry]]:
        """Count one failed delivery for each returned entry: (entries to requeue, entries over the limit).

        A requeued entry's next delivery carries its count as x-delivery-count (`count`).
        """
        counts = self._counts
        limit = self.limit
        keep: list[QueueEntry] = []
        over: list[QueueEntry] = []
        for entry in entries:
            count = counts.get(entry.seq, 0) + 1
            if limit is not None and count > limit:
                counts.pop(entry.seq, None)
                over.append(entry)
                continue
            counts[entry.seq] = count
            keep.append(entry)
        return keep, over

    def count(self, entry: QueueEntry) -> int:
        """The failed deliveries of `entry` so far (0: none)."""
        return self._counts.get(entry.seq, 0)

    def __len__(self) -> int:
        """How many entries have a count."""
        return len(self._counts)

    def forget(self, entries: Iterable[QueueEntry]) -> None:
        """Entries left the queue for good."""
        counts = self._counts
        if counts:
            for entry in entries:
                counts.pop(entry.seq, None)

    def clear(self) -> None:
        """The queue was deleted: no entry of it comes back."""
        self._counts.clear()


def with_delivery_count(message: Message, count: int) -> Message:
    """A copy of `message` whose headers say x-delivery-count = `count`, for one delivery."""
    headers = dict(message.headers or {})
    headers["x-delivery-count"] = count
    copy = Message(
        message.exchange,
        message.routing_key,
        fresh_properties(message.properties, headers=headers),
        message.body,
        message.persistent,
    )
    return copy
