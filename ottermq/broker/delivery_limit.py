"""Delivery limit (x-delivery-limit): poison messages are dead-lettered or dropped instead of looping.

Strategy: as RabbitMQ's quorum queues do (OtterMQ offers it on every queue), each return of a delivered
message to the queue (reject/nack with requeue, channel closed with it unacknowledged) counts one failed
delivery. While the count is within the limit the message is redelivered with an `x-delivery-count`
header holding the count; once it exceeds the limit the message leaves the queue (dead-lettered with
reason `delivery_limit` when the queue has a dead-letter exchange). Counts are kept per queue entry,
only for entries that came back at least once, so the common path costs nothing.

In a durable queue the counts of logged messages are durable state (as in RabbitMQ, whose quorum queues
keep them in the Raft log): each return is logged (`MessagesReturned`), and so is each delivery to a
consumer that must acknowledge (`MessagesDelivered`, gathered per event-loop turn), so that the messages
that were out when the log ended are known and returned, counted, when the broker serves again (after a
crash, a restart or a failover), as RabbitMQ returns a consumer's messages when its node goes down. The
apply of those events is `delivered` and `add_returns` here; the decision to drop one over the limit is
the live path's (`Queue.requeue`), logged as a removal.
"""

from __future__ import annotations

from collections.abc import Iterable

from ottermq.broker.deadletter import fresh_properties
from ottermq.broker.message import Message, QueueEntry


class DeliveryCounts:
    """Failed-delivery counts of the entries of one queue, by entry seq."""

    __slots__ = ("_counts", "_out", "always", "limit")

    def __init__(self, limit: int | None, always: bool = False) -> None:
        # None: no limit (a quorum queue without x-delivery-limit still counts, for the header).
        self.limit = limit
        # A quorum queue's deliveries all carry x-delivery-count, 0 on the first (RabbitMQ 3.10).
        self.always = always
        self._counts: dict[int, int] = {}
        # Seqs of logged entries delivered (MessagesDelivered) and not back or settled since.
        self._out: set[int] = set()

    def delivered(self, entries: Iterable[QueueEntry]) -> None:
        """Logged entries went out to a consumer that must acknowledge them (the apply of
        MessagesDelivered)."""
        self._out.update(entry.seq for entry in entries)

    @property
    def any_out(self) -> bool:
        """True when some logged entry is out (delivered, not back)."""
        return bool(self._out)

    def is_out(self, entry: QueueEntry) -> bool:
        """True when `entry` was delivered (logged as such) and has not come back or left since."""
        return entry.seq in self._out

    def add_returns(self, entries: Iterable[QueueEntry]) -> None:
        """Count one failed delivery for each entry (the apply of MessagesReturned; live, also for
        entries that are not logged)."""
        counts = self._counts
        out = self._out
        for entry in entries:
            seq = entry.seq
            counts[seq] = counts.get(seq, 0) + 1
            out.discard(seq)

    def over_limit(self, entries: Iterable[QueueEntry]) -> tuple[list[QueueEntry], list[QueueEntry]]:
        """(entries within the limit, entries over it: their counts are dropped, they leave the queue)."""
        limit = self.limit
        if limit is None:
            return list(entries), []
        counts = self._counts
        keep: list[QueueEntry] = []
        over: list[QueueEntry] = []
        for entry in entries:
            if counts.get(entry.seq, 0) > limit:
                counts.pop(entry.seq, None)
                over.append(entry)
            else:
                keep.append(entry)
        return keep, over

    def restore(self, entry: QueueEntry, count: int, out: bool) -> None:
        """A snapshot's count and delivered mark of `entry`."""
        if count:
            self._counts[entry.seq] = count
        if out:
            self._out.add(entry.seq)

    def returned(self, entries: Iterable[QueueEntry]) -> tuple[list[QueueEntry], list[QueueEntry]]:
        """Count one failed delivery for each returned entry: (entries to requeue, entries over the limit).

        A requeued entry's next delivery carries its count as x-delivery-count (`count`).
        """
        listed = list(entries)
        self.add_returns(listed)
        return self.over_limit(listed)

    def count(self, entry: QueueEntry) -> int:
        """The failed deliveries of `entry` so far (0: none)."""
        return self._counts.get(entry.seq, 0)

    def __len__(self) -> int:
        """How many entries have a count."""
        return len(self._counts)

    def forget(self, entries: Iterable[QueueEntry]) -> None:
        """Entries left the queue for good."""
        counts = self._counts
        out = self._out
        if counts or out:
            for entry in entries:
                counts.pop(entry.seq, None)
                out.discard(entry.seq)

    def clear(self) -> None:
        """The queue was deleted: no entry of it comes back."""
        self._counts.clear()
        self._out.clear()


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
