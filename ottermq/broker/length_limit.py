"""Length limits (x-max-length, x-max-length-bytes) and what a full queue does (x-overflow).

Strategy: the limits count ready messages only, as RabbitMQ's do, and bytes are body bytes. With
drop-head (the default) a publish is always accepted and the oldest ready messages are then dropped (or
dead-lettered) until the queue fits; with reject-publish a publish that would not fit is refused (a
confirm channel nacks it), and reject-publish-dlx dead-letters the refused message too. Byte counts are
kept by a `SizedReady` around the queue's ready container, so that every way an entry enters or leaves
the ready list (delivery, expiry, requeue, purge) counts without the queue having to think of it, and a
queue without x-max-length-bytes counts nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from ottermq.broker.message import QueueEntry
from ottermq.broker.ready import Ready

DROP_HEAD: Final = "drop-head"
REJECT_PUBLISH_DLX: Final = "reject-publish-dlx"


class SizedReady:
    """A ready container that also counts the body bytes of its entries."""

    __slots__ = ("_inner", "bytes")

    def __init__(self, inner: Ready) -> None:
        self._inner = inner
        self.bytes = sum(entry.size for entry in inner)

    def __len__(self) -> int:
        return len(self._inner)

    def __iter__(self) -> Iterator[QueueEntry]:
        return iter(self._inner)

    def __getitem__(self, index: int, /) -> QueueEntry:
        return self._inner[index]

    def append(self, entry: QueueEntry, /) -> None:
        self._inner.append(entry)
        self.bytes += entry.size

    def extend(self, entries: Iterable[QueueEntry], /) -> None:
        for entry in entries:
            self.append(entry)

    def extendleft(self, entries: Iterable[QueueEntry], /) -> None:
        listed = list(entries)
        self._inner.extendleft(listed)
        self.bytes += sum(entry.size for entry in listed)

    def popleft(self) -> QueueEntry:
        entry = self._inner.popleft()
        self.bytes -= entry.size
        return entry

    def clear(self) -> None:
        self._inner.clear()
        self.bytes = 0


def unwrap(ready: Ready) -> Ready:
    """The container inside a `SizedReady` (`ready` itself otherwise), to wrap it anew."""
    return ready._inner if isinstance(ready, SizedReady) else ready


class LengthLimit:
    """The length limits of one queue (at least one of them set) and its x-overflow behaviour."""

    __slots__ = ("_sized", "drops_head", "max_bytes", "max_length", "overflow")

    def __init__(self, max_length: int | None, max_bytes: int | None, overflow: str) -> None:
        self.max_length = max_length
        self.max_bytes = max_bytes
        self.overflow = overflow
        self.drops_head = overflow == DROP_HEAD
        self._sized: SizedReady | None = None

    @property
    def sized(self) -> bool:
        """True when the queue counts the bytes of its ready messages (x-max-length-bytes)."""
        return self.max_bytes is not None

    def wrap(self, ready: Ready) -> Ready:
        """The queue's ready container, counting bytes when x-max-length-bytes needs them."""
        if self.max_bytes is None:
            return ready
        self._sized = SizedReady(ready)
        return self._sized

    @property
    def ready_bytes(self) -> int:
        """Body bytes of the ready messages (0 when they are not counted)."""
        return self._sized.bytes if self._sized is not None else 0

    def would_overflow(self, ready: int, size: int) -> bool:
        """True when one more message of `size` bytes would take the ready messages over a limit."""
        max_length, max_bytes = self.max_length, self.max_bytes
        return (max_length is not None and ready + 1 > max_length) or (
            max_bytes is not None and self.ready_bytes + size > max_bytes
        )

    def refuses(self, ready: int, size: int) -> bool:
        """True when a publish of `size` bytes is refused now (reject-publish or reject-publish-dlx)."""
        return not self.drops_head and self.would_overflow(ready, size)

    def over(self, ready: int) -> bool:
        """True when drop-head must drop the head: `ready` messages (and their bytes) exceed a limit."""
        max_length, max_bytes = self.max_length, self.max_bytes
        return (max_length is not None and ready > max_length) or (
            max_bytes is not None and self.ready_bytes > max_bytes
        )
