"""Per-channel tracking of deliveries that await basic.ack / nack / reject.

Strategy: delivery tags only grow, so a plain dict keyed by tag keeps them in tag order for free.
Settling one tag is a dict pop; `multiple` walks from the oldest entry up to the tag, which is where
the acknowledged entries are. What is stored per tag is up to the caller (the channel stores the
queue, the queue entry and the consumer), so this class stays pure bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from ottermq.amqp.constants import PRECONDITION_FAILED
from ottermq.amqp.errors import ChannelError

T = TypeVar("T")


class UnackedTracker(Generic[T]):
    """Delivery tags of one channel (from 1) and the deliveries still waiting to be settled."""

    __slots__ = ("_entries", "last_tag")

    def __init__(self) -> None:
        self._entries: dict[int, T] = {}
        self.last_tag = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tag: int) -> bool:
        return tag in self._entries

    def next_tag(self) -> int:
        """Allocate the next delivery tag (no-ack deliveries use tags too)."""
        self.last_tag += 1
        return self.last_tag

    def track(self, tag: int, item: T) -> None:
        """Remember a delivery that needs settling; `tag` must be the newest allocated one."""
        self._entries[tag] = item

    def settle(self, tag: int, multiple: bool) -> list[T]:
        """Take out the deliveries a basic.ack/nack/reject names, oldest first.

        `multiple` with tag 0 means every outstanding delivery. Otherwise the tag must be outstanding,
        else the 406 RabbitMQ sends for an unknown (or already settled) tag.
        """
        entries = self._entries
        if multiple:
            if tag == 0:
                return self.take_all()
            if tag not in entries:
                raise ChannelError(PRECONDITION_FAILED, f"PRECONDITION_FAILED - unknown delivery tag {tag}")
            keys: list[int] = []
            for key in entries:
                if key > tag:
                    break
                keys.append(key)
            # Popping after the walk: a dict must not change size while iterated.
            return [entries.pop(key) for key in keys]
        item = entries.pop(tag, None)
        if item is None:
            raise ChannelError(PRECONDITION_FAILED, f"PRECONDITION_FAILED - unknown delivery tag {tag}")
        return [item]

    def take_all(self) -> list[T]:
        """Every outstanding delivery, oldest first; the tracker is left empty (tags keep counting)."""
        taken = list(self._entries.values())
        self._entries.clear()
        return taken

    def restore(self, items: Iterable[tuple[int, T]]) -> None:
        """Put settled deliveries back (tx.rollback), keeping tag order."""
        merged = dict(self._entries)
        merged.update(items)
        self._entries = dict(sorted(merged.items()))

    def outstanding(self) -> list[T]:
        """The deliveries still waiting to be settled, oldest first (for the management API's counts)."""
        return list(self._entries.values())

    def tags(self) -> list[int]:
        """Outstanding tags in order (for diagnostics and tests)."""
        return list(self._entries)
