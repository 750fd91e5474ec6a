"""Resource alarms (memory, disk): while one is on, publishers are blocked and consumers keep draining.

Strategy: as RabbitMQ. The server's resource monitor samples memory and free disk and calls
`Broker.set_alarm(name, active)`; this module keeps which alarms are on and, when the first one goes on or
the last one goes off, tells every live connection. A connection then sends connection.blocked (with
RabbitMQ's reason text) or connection.unblocked if its client announced the `connection.blocked`
capability, and arms itself: the next content it receives (a publish) makes it stop reading from its socket
until the alarms clear. A consuming connection never publishes, so it keeps reading acks and keeps
receiving deliveries; nothing is dropped, the publisher's own TCP window simply stops.

What an alarm does to one connection is the functions below the `Alarms` class (`block`, `unblock`,
`finish_content`, `pause_reading`): functions of `Connection` kept here with the concept; they set its
alarm state (`_block_on_publish`, `_blocked_sent`, `_read_paused`) as its methods would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from ottermq.amqp.handshake import RUNNING
from ottermq.amqp.methods import ConnectionBlocked, ConnectionUnblocked

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection

log: Final = logging.getLogger("ottermq.broker")

ALARM_MEMORY: Final = "memory"
ALARM_DISK: Final = "disk"
# Raised by the durable store when the log cannot be written (fsync error, ENOSPC); whatever the free-disk
# monitor sees, only the store clears it: when writing resumes after a full disk (never after a failure).
ALARM_JOURNAL: Final = "journal"
# Raised by replication while fewer nodes than `min_in_sync` are in the in-sync set (publishes are nacked).
ALARM_CLUSTER: Final = "cluster"
# connection.blocked reasons, as RabbitMQ words them (a journal failure reads as a disk alarm to clients).
REASONS: Final = {
    ALARM_MEMORY: "low on memory",
    ALARM_DISK: "low on disk",
    ALARM_JOURNAL: "low on disk",
    ALARM_CLUSTER: "too few in-sync replicas",
}


class Alarms:
    """Which resource alarms are on; `set` tells the connections when the broker becomes (un)blocked."""

    __slots__ = ("_active",)

    def __init__(self) -> None:
        # Insertion-ordered: the reason sent is that of the alarm that went on first.
        self._active: dict[str, None] = {}

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the alarms that are on, oldest first."""
        return tuple(self._active)

    @property
    def blocking(self) -> bool:
        """True while any alarm is on (publishers are blocked)."""
        return bool(self._active)

    @property
    def reason(self) -> str:
        """The connection.blocked reason for the alarms now on ("" when none is)."""
        for name in self._active:
            return REASONS[name]
        return ""

    def set(self, name: str, active: bool, connections: Iterable[Connection]) -> bool:
        """Turn alarm `name` on or off; returns True when the broker's blocked state changed.

        Raises ValueError for an unknown alarm name.
        """
        if name not in REASONS:
            raise ValueError(f"unknown resource alarm {name!r}; expected one of {', '.join(REASONS)}")
        was_blocking = bool(self._active)
        if active:
            if name in self._active:
                return False
            self._active[name] = None
            log.warning("resource alarm set; blocking publishers", extra={"alarm": name})
        else:
            if name not in self._active:
                return False
            del self._active[name]
            log.warning("resource alarm cleared", extra={"alarm": name})
        blocking = bool(self._active)
        if blocking == was_blocking:
            return False
        reason = self.reason
        for connection in list(connections):
            if blocking:
                block(connection, reason)
            else:
                unblock(connection)
        if not blocking:
            log.info("all resource alarms cleared; publishers unblocked")
        return True


def block(conn: Connection, reason: str) -> None:
    """A resource alarm went on: notify the client (if it asked) and pause reading at its next publish,
    or now if a message is under way on one of its channels (its further body frames are not read)."""
    if conn.closed:
        return
    conn._block_on_publish = True
    if conn._machine.content_in_progress:
        pause_reading(conn)
    if (
        conn._machine.state == RUNNING
        and not conn._blocked_sent
        and conn.capabilities.get("connection.blocked") is True
    ):
        conn._blocked_sent = True
        conn.send_method(0, ConnectionBlocked(reason))


def unblock(conn: Connection) -> None:
    """Every resource alarm cleared: connection.unblocked, and read from the socket again."""
    conn._block_on_publish = False
    if conn.closed:
        return
    if conn._blocked_sent:
        conn._blocked_sent = False
        conn.send_method(0, ConnectionUnblocked())
    if conn._read_paused:
        conn._read_paused = False
        conn.transport.resume_reading()


def finish_content(conn: Connection) -> None:
    """Read again while the alarm stays on, until the next content header: the messages under way on
    this connection complete. The memory monitor asks this of one connection at a time when content in
    flight alone keeps the alarm on, which nothing else could clear."""
    if conn._read_paused and not conn.closed:
        conn._read_paused = False
        log.info("publisher read again to complete its messages under way", extra={"conn": conn.name})
        conn.transport.resume_reading()


def pause_reading(conn: Connection) -> None:
    """Stop reading a blocked publisher. Frames already read are still handled; what the client sends
    next waits in its TCP window."""
    if not conn._read_paused:
        conn._read_paused = True
        log.info("publisher blocked by a resource alarm", extra={"conn": conn.name})
        conn.transport.pause_reading()
