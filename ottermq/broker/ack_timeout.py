"""Consumer delivery acknowledgement timeout (RabbitMQ's `consumer_timeout`).

Strategy: no clock is read per delivery. Once a second (`Broker.tick`) each channel's oldest
unacknowledged delivery tag is noted with the time it was first seen as the oldest; a channel whose
oldest tag stays the same for longer than the timeout is closed with RabbitMQ's 406, which requeues
everything it holds. The error is at most one tick late, never early.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ottermq.amqp.constants import PRECONDITION_FAILED

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel
    from ottermq.broker.connection import Connection


def timeout_text(channel_number: int, timeout_ms: int) -> str:
    """The channel.close text RabbitMQ sends when the timeout hits."""
    return (
        f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel_number} timed out. "
        f"Timeout value used: {timeout_ms} ms. This timeout value can be configured, "
        "see consumers doc guide to learn more"
    )


class AckTimeouts:
    """The oldest outstanding delivery of every channel, and since when it has been the oldest."""

    __slots__ = ("_oldest",)

    def __init__(self) -> None:
        self._oldest: dict[Channel, tuple[int, float]] = {}

    def tick(self, connections: Iterable[Connection], now: float, timeout_ms: int) -> None:
        """Close the channels whose oldest delivery has waited longer than `timeout_ms` (`now` in
        seconds; a timeout of 0 turns the check off)."""
        if timeout_ms <= 0:
            self._oldest.clear()
            return
        previous = self._oldest
        current: dict[Channel, tuple[int, float]] = {}
        for connection in list(connections):
            for channel in list(connection.channels.values()):
                if not channel.is_open or not len(channel.unacked):
                    continue
                tag = channel.unacked.tags()[0]
                seen = previous.get(channel)
                since = seen[1] if seen is not None and seen[0] == tag else now
                if (now - since) * 1000 >= timeout_ms:
                    channel.fail(PRECONDITION_FAILED, timeout_text(channel.number, timeout_ms), 0, 0)
                    continue
                current[channel] = (tag, since)
        self._oldest = current
