"""Heartbeat deadlines of one connection, both ways, from an explicit `now`.

Strategy: the owner notes traffic with two flags per read and write (reading a clock per message would cost
more than the message) and calls `poll(now, received, sent)` about once a second; the clock turns the flags
into timestamps there. As RabbitMQ: a heartbeat is due once nothing was sent for half the negotiated
interval, and a peer that sent nothing for two intervals is dead. Interval 0 disables both.
"""

from enum import IntEnum
from typing import Final

__all__ = ["HeartbeatClock", "HeartbeatDue"]


class HeartbeatDue(IntEnum):
    """What `HeartbeatClock.poll` asks of its owner."""

    NOTHING = 0
    SEND = 1  # write a heartbeat frame (frames.HEARTBEAT_FRAME)
    PEER_DEAD = 2  # the peer missed its heartbeats: drop the connection


_NOTHING: Final = HeartbeatDue.NOTHING
_SEND: Final = HeartbeatDue.SEND
_PEER_DEAD: Final = HeartbeatDue.PEER_DEAD


class HeartbeatClock:
    """When to send a heartbeat and when the peer counts as dead (times in seconds, any monotonic clock)."""

    __slots__ = ("interval", "last_received", "last_sent")

    def __init__(self, interval: int = 0) -> None:
        self.interval = interval
        # 0.0 until the first poll, which starts both clocks.
        self.last_received = 0.0
        self.last_sent = 0.0

    def poll(self, now: float, received: bool, sent: bool) -> HeartbeatDue:
        """`received` / `sent`: whether any bytes came in / went out since the previous poll."""
        if received or not self.last_received:
            self.last_received = now
        if sent or not self.last_sent:
            self.last_sent = now
        interval = self.interval
        if not interval:
            return _NOTHING
        if now - self.last_received >= 2 * interval:
            return _PEER_DEAD
        if now - self.last_sent >= interval / 2:
            self.last_sent = now
            return _SEND
        return _NOTHING
