"""Priority queues (x-max-priority): the ready list as one FIFO per priority, highest served first.

Strategy: `PriorityReady` is a `ready.Ready` container (the deque operations `Queue` uses on its ready
list: append, popleft, extendleft, extend, [0], len, clear, iteration), so a priority queue is an
ordinary queue whose ready container is one of these (chosen at declare, features.py). A message's
priority is its `priority` property capped at the queue's maximum (absent = 0), as RabbitMQ's classic
priority queues do; within one priority the order is FIFO, and requeued entries go back to the head of
their own priority in their original order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from ottermq.broker.message import QueueEntry


def entry_priority(entry: QueueEntry, maximum: int) -> int:
    """The priority an entry is served at: its message's priority property, capped at `maximum`."""
    priority = entry.priority
    return priority if priority < maximum else maximum


class PriorityReady:
    """Ready entries of a priority queue: `maximum + 1` FIFOs, the highest non-empty one first."""

    __slots__ = ("_buckets", "_count", "_maximum", "_top")

    def __init__(self, maximum: int) -> None:
        self._maximum = maximum
        self._buckets: list[deque[QueueEntry]] = [deque() for _ in range(maximum + 1)]
        self._count = 0
        # The highest bucket that may be non-empty (buckets above it are empty).
        self._top = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[QueueEntry]:
        """Entries in delivery order."""
        for bucket in reversed(self._buckets):
            yield from bucket

    def __getitem__(self, index: int) -> QueueEntry:
        """Only the head (index 0) is ever asked for."""
        if index != 0 or not self._count:
            raise IndexError(index)
        return self._head_bucket()[0]

    def _head_bucket(self) -> deque[QueueEntry]:
        buckets = self._buckets
        top = self._top
        while not buckets[top]:
            top -= 1
        self._top = top
        return buckets[top]

    def _bucket_of(self, entry: QueueEntry) -> deque[QueueEntry]:
        priority = entry_priority(entry, self._maximum)
        if priority > self._top:
            self._top = priority
        return self._buckets[priority]

    def append(self, entry: QueueEntry) -> None:
        """A new entry at the tail of its priority."""
        self._bucket_of(entry).append(entry)
        self._count += 1

    def extend(self, entries: Iterable[QueueEntry]) -> None:
        """Append several entries (recovery)."""
        for entry in entries:
            self.append(entry)

    def popleft(self) -> QueueEntry:
        """Take the head: the oldest entry of the highest priority."""
        if not self._count:
            raise IndexError("pop from an empty PriorityReady")
        self._count -= 1
        return self._head_bucket().popleft()

    def extendleft(self, entries: Iterable[QueueEntry]) -> None:
        """Put entries back at the heads of their priorities; as with a deque, the last one given ends up
        first, so callers pass them in reverse order."""
        touched: set[int] = set()
        for entry in entries:
            bucket = self._bucket_of(entry)
            bucket.appendleft(entry)
            touched.add(id(bucket))
            self._count += 1
        # Entries requeued earlier may sit in a bucket the caller's merge did not look at (it only sees
        # the overall head): restore seq order at the head of every bucket that received entries.
        for bucket in self._buckets:
            if id(bucket) in touched and len(bucket) > 1:
                _sort_head(bucket)

    def clear(self) -> None:
        """Drop every entry."""
        for bucket in self._buckets:
            bucket.clear()
        self._count = 0
        self._top = 0


def _sort_head(bucket: deque[QueueEntry]) -> None:
    """Sort the leading run of requeued (redelivered) entries of `bucket` by seq."""
    head: list[QueueEntry] = []
    while bucket and bucket[0].redelivered:
        head.append(bucket.popleft())
    head.sort(key=_seq)
    bucket.extendleft(reversed(head))


def _seq(entry: QueueEntry) -> int:
    return entry.seq
