"""What a queue needs from a consumer: the `Consumer` protocol, implemented by the channel.

Strategy: the queue decides which consumer gets the next message (priority, then round-robin among those
with credit); the consumer decides whether it can take one (`has_credit`: QoS window open and transport
writable) and what delivering means (basic.deliver, unacked tracking). Keeping this boundary narrow lets the
queue be tested with a tiny consumer of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ottermq.broker.message import QueueEntry
    from ottermq.broker.queue import Queue


class Consumer(Protocol):
    """A subscription to one queue (basic.consume)."""

    @property
    def tag(self) -> str:
        """The consumer tag (unique on its channel)."""
        ...

    @property
    def no_ack(self) -> bool:
        """True when deliveries need no acknowledgement."""
        ...

    @property
    def exclusive(self) -> bool:
        """True when this consumer asked to be the queue's only one."""
        ...

    @property
    def priority(self) -> int:
        """Consumer priority (x-priority; 0 by default): higher priorities are served first."""
        ...

    def has_credit(self) -> bool:
        """True when the consumer can take one more message now."""
        ...

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        """Hand one message over; the entry is no longer ready in `queue`."""
        ...

    def cancelled_by_broker(self) -> None:
        """The queue went away (deleted): tell the client if it asked to be told."""
        ...
