"""Queue expiry (x-expires): a queue unused for that long is deleted, and the once-a-second queue timers.

Strategy: as in RabbitMQ, "used" means declared (also passively), consumed from, read with basic.get or
left by a consumer; a queue with consumers is never unused. `tick_queues` runs from `Broker.tick` about
once a second: it expires the due entries at the heads of the queues that may hold any (so a queue with a
TTL and no consumer does not grow without bound) and deletes the queues whose x-expires has run out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ottermq.broker.ttl import now_ms

if TYPE_CHECKING:
    from ottermq.broker.vhost import VHost


class QueueExpiry:
    """The x-expires of one queue (ms) and when it was last used (ms since the epoch)."""

    __slots__ = ("expires", "last_used")

    def __init__(self, expires: int) -> None:
        self.expires = expires
        self.last_used = now_ms()

    def used(self, now: int | None = None) -> None:
        """The queue was used: x-expires counts from now again."""
        self.last_used = now_ms() if now is None else now

    def due(self, now: int) -> bool:
        """True when the queue has been unused for x-expires at `now` (the caller checks consumers)."""
        return now - self.last_used >= self.expires


def tick_queues(vhosts: Iterable[VHost], now: int) -> None:
    """Run the timers of every queue of `vhosts` that has any (`now` in ms since the epoch): head expiry
    of entries with deadlines, and x-expires."""
    for vhost in vhosts:
        unused = [queue for queue in vhost.queues.values() if not queue.plain and queue.tick(now)]
        for queue in unused:
            vhost.delete_queue(queue.name, owner=queue.exclusive_owner)
