"""Where the broker writes its durable events: the `Journal` protocol, and the in-memory journal.

Strategy: the broker defines the interface it needs and nothing more, so the durable store (which imports
the broker) can implement it without the broker knowing about storage. A position orders events; once a
position is durable, every earlier one is too, so `when_durable` on the last event of an operation covers
the whole operation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ottermq.broker.events import Event


class Journal(Protocol):
    """An append-only, ordered log of events with a durability horizon."""

    @property
    def durable_position(self) -> int:
        """The highest position known to be durable (0 before any)."""
        ...

    @property
    def failed(self) -> bool:
        """True once the journal cannot make anything durable any more (the broker stops accepting work),
        and while it is `suspended`."""
        ...

    @property
    def suspended(self) -> bool:
        """True while the journal waits for disk space (then `failed` is True too). Nothing new is
        accepted, but removals (acks) are still appended: they become durable when it resumes."""
        ...

    @property
    def next_position(self) -> int:
        """The position the next `append` will return (a transaction names its messages before logging)."""
        ...

    @property
    def last_loc(self) -> int:
        """Where the last appended record lies, for reading a message back (opaque; 0 when nothing is
        stored). The `i`-th publish of a multi-publish record lies at `last_loc + i`."""
        ...

    def append(self, event: Event) -> int:
        """Queue `event` for writing and return its position (positions grow by one from 1)."""
        ...

    def when_durable(
        self, position: int, callback: Callable[[], None], failed: Callable[[], None] | None = None
    ) -> None:
        """Call `callback` once `position` is durable (at once if it already is); if the journal fails
        first, call `failed` instead (when given)."""
        ...


class MemoryJournal:
    """A journal that keeps nothing: every position is durable as soon as it is appended."""

    __slots__ = ("durable_position", "failed", "last_loc", "position", "suspended")

    def __init__(self) -> None:
        self.position = 0
        self.durable_position = 0
        self.failed = False
        self.suspended = False
        self.last_loc = 0

    @property
    def next_position(self) -> int:
        """The position the next append gets."""
        return self.position + 1

    def append(self, event: Event) -> int:
        """Count the event; it is durable at once."""
        self.position += 1
        self.durable_position = self.position
        return self.position

    def when_durable(
        self, position: int, callback: Callable[[], None], failed: Callable[[], None] | None = None
    ) -> None:
        """Nothing is pending in memory, so the callback runs at once."""
        callback()
