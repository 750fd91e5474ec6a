"""How a connection ends: errors become channel.close or connection.close, the close handshakes, teardown.

Strategy: functions of one `Connection`, split out of connection.py by concern; they read and set its
state as its methods do, private fields included. `fail` is the one place where an `AMQPError` (the
protocol machine's or a handler's) becomes channel.close (soft codes, on an open channel) or
connection.close (hard codes, or during the handshake), filling in the class and method of the event that
caused it. `close` sends connection.close and leaves the wait for close-ok to `Connection.tick` (bounded by
`_close_deadline`); `finish` releases everything and closes the socket.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from ottermq.amqp.constants import CONNECTION_FORCED
from ottermq.amqp.errors import AMQPError
from ottermq.amqp.events import ContentReceived, Event
from ottermq.amqp.frames import MethodFrame
from ottermq.amqp.handshake import CLOSING, RUNNING, TUNING
from ottermq.amqp.methods import ConnectionClose, ConnectionCloseOk

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection

log: Final = logging.getLogger("ottermq.broker")

# Codes the spec calls soft: they close a channel, not the connection.
SOFT_CODES: Final = frozenset({311, 312, 313, 403, 404, 405, 406})

# How long the socket stays open after our close-ok, waiting for the client to close it first.
_CLOSE_OK_LINGER: Final = 5.0


def fail(conn: Connection, exc: AMQPError, event: Event | None) -> None:
    """The one place where an error becomes channel.close or connection.close. `event` is the one whose
    handling raised it (None: the machine refused a frame, or a deferred callback failed)."""
    class_id, method_id = exc.class_id, exc.method_id
    if not class_id:
        class_id, method_id = ids_of(event)
    number = event.channel if isinstance(event, MethodFrame | ContentReceived) else exc.channel
    channel = conn.channels.get(number) if number else None
    if exc.reply_code in SOFT_CODES and channel is not None and conn._machine.state == RUNNING:
        log.info(
            "channel error",
            extra={"conn": conn.name, "channel": number, "code": exc.reply_code, "text": exc.reply_text},
        )
        channel.fail(exc.reply_code, exc.reply_text, class_id, method_id)
        return
    unauthenticated = conn._machine.state < TUNING
    close(conn, exc.reply_code, exc.reply_text, class_id, method_id)
    if unauthenticated:
        # A peer that has not logged in is not waited for; RabbitMQ drops it right after the close.
        finish(conn)


def close(conn: Connection, code: int, text: str, class_id: int, method_id: int) -> None:
    """Send connection.close and wait (bounded) for close-ok; channels end now."""
    if conn.closed or conn._machine.state == CLOSING:
        return
    if code != CONNECTION_FORCED:
        log.warning(
            "connection error",
            extra={"conn": conn.name, "state": conn.state, "code": code, "text": text},
        )
    conn.close_reason = text
    _end_channels(conn)
    settings = conn.settings
    timeout = conn.heartbeat if 0 < conn.heartbeat < settings.close_timeout else settings.close_timeout
    conn._close_deadline = time.monotonic() + timeout
    conn.send_method(0, ConnectionClose(code, text, class_id, method_id))


def client_closed(conn: Connection) -> None:
    """The client's connection.close: channels end, close-ok, and the socket after the client's own close."""
    conn.close_reason = "client closed the connection"
    _end_channels(conn)
    conn.send_method(0, ConnectionCloseOk())
    finish(conn, linger=_CLOSE_OK_LINGER)


def finish(conn: Connection, linger: float = 0.0) -> None:
    """Everything ends: channels, exclusive queues, the socket.

    With `linger`, the socket stays open that long (or until the peer closes it): after our close-ok the
    client closes first, as with RabbitMQ; closing at once makes some clients read EOF before close-ok.
    """
    if conn.closed:
        return
    conn.closed = True
    # What the machine holds of incomplete contents goes with it.
    conn._memory.in_flight -= conn.content_bytes
    conn.content_bytes = 0
    if conn._login_check is not None:
        conn.broker.auth.cancel(conn._login_check)  # nobody waits for it any more
        conn._login_check = None
    try:
        _end_channels(conn)
        if conn.vhost is not None:
            conn.vhost.owner_closed(conn)
    finally:
        conn.broker.connection_closed(conn)
        transport = conn.transport
        if linger > 0:
            transport.call_later(linger, transport.close)
        else:
            transport.close()


def _end_channels(conn: Connection) -> None:
    channels = list(conn.channels.values())
    conn.channels.clear()
    for channel in channels:
        channel.release()


def ids_of(event: Event | None) -> tuple[int, int]:
    """Class and method id of the method an event carries (a message: its basic.publish)."""
    if isinstance(event, MethodFrame | ContentReceived):
        return event.method.CLASS_ID, event.method.METHOD_ID
    return 0, 0
