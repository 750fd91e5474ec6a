"""Prefetch windows (basic.qos) as RabbitMQ interprets them with per_consumer_qos.

Strategy: a `PrefetchWindow` counts deliveries that await an ack against a limit (0 = unlimited).
Each consumer owns one, sized by the channel's `consumer_prefetch` at basic.consume time
(`global=false`, applies to consumers created afterwards); the channel owns one more shared by all
its consumers (`global=true`). A consumer may receive a message only while both are open. Messages
fetched with basic.get count against neither, as in RabbitMQ.
"""

from __future__ import annotations

from ottermq.amqp.constants import NOT_IMPLEMENTED
from ottermq.amqp.errors import AMQPConnectionError


class PrefetchWindow:
    """Unacknowledged deliveries against a limit; the hot path reads the two slots directly."""

    __slots__ = ("limit", "outstanding")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.outstanding = 0

    def is_open(self) -> bool:
        """True when one more delivery fits."""
        return self.limit == 0 or self.outstanding < self.limit

    def take(self) -> None:
        """Count one delivery."""
        self.outstanding += 1

    def release(self, count: int = 1) -> bool:
        """Count `count` settled deliveries; True when this reopened a full window."""
        was_full = self.limit != 0 and self.outstanding >= self.limit
        self.outstanding = max(0, self.outstanding - count)
        return was_full and self.outstanding < self.limit


class ChannelQos:
    """The qos state of one channel: the default for new consumers and the shared window."""

    __slots__ = ("consumer_prefetch", "shared")

    def __init__(self) -> None:
        self.consumer_prefetch = 0
        self.shared = PrefetchWindow()

    def apply(self, prefetch_size: int, prefetch_count: int, global_: bool) -> None:
        """Apply a basic.qos (the caller dispatches again: a window may have opened).

        prefetch_size is not supported by RabbitMQ either: 540. A per-consumer qos also lifts the
        shared limit, as RabbitMQ's channel does.
        """
        if prefetch_size != 0:
            raise AMQPConnectionError(
                NOT_IMPLEMENTED, f"NOT_IMPLEMENTED - prefetch_size!=0 ({prefetch_size})"
            )
        if global_:
            self.shared.limit = prefetch_count
        else:
            self.consumer_prefetch = prefetch_count
            self.shared.limit = 0
