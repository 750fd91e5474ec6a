"""The ready list of a queue: what `Queue` asks of the container that holds its ready entries.

Strategy: a plain queue keeps them in a `collections.deque` (which satisfies `Ready` as it is); a priority
queue in a `priority.PriorityReady`; a queue with x-max-length-bytes wraps either in a
`length_limit.SizedReady`, which counts their bytes. The queue is written against this protocol only, so
one dispatch loop serves them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from ottermq.broker.message import QueueEntry


class Ready(Protocol):
    """Ready entries in delivery order: appended at the tail, taken and put back at the head."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[QueueEntry]: ...

    def __getitem__(self, index: int, /) -> QueueEntry:
        """Only the head (index 0) is ever asked for."""
        ...

    def append(self, entry: QueueEntry, /) -> None: ...

    def extend(self, entries: Iterable[QueueEntry], /) -> None: ...

    def extendleft(self, entries: Iterable[QueueEntry], /) -> None:
        """Put entries back at the head; as with a deque, the last one given ends up first."""
        ...

    def popleft(self) -> QueueEntry: ...

    def clear(self) -> None: ...
