"""Logging a client in: connection.start, start-ok (mechanism, user, the password check off the event loop),
refusals, connection.tune, and connection.open (the vhost and the user's access to it).

Strategy: functions of one `Connection`, split out of connection.py by concern; they read and set its
state as its methods do, private fields included. The connection calls them for the channel-0 methods the
protocol machine found legal. A full password check (tens of ms of PBKDF2) runs on the authenticator's
worker threads: meanwhile the connection reads nothing and handles no frame (`_authenticating`), and
`_password_checked` picks the pipelined frames up where they stopped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from ottermq.amqp.constants import ACCESS_REFUSED, COMMAND_INVALID, CONNECTION_FORCED, NOT_ALLOWED
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.methods import (
    ConnectionClose,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
)
from ottermq.broker.alarms import block
from ottermq.broker.auth import AuthFailure, PendingLogin
from ottermq.broker.checks import UNCHECKED_REFUSAL_DELAY
from ottermq.broker.closing import finish
from ottermq.broker.permissions import Guard
from ottermq.broker.user_limits import check_connections

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection

log: Final = logging.getLogger("ottermq.broker")


def send_start(conn: Connection) -> None:
    """The client sent the protocol header: offer the mechanisms this peer may use."""
    conn.send_method(
        0,
        ConnectionStart(
            version_major=0,
            version_minor=9,
            server_properties=conn.broker.server_properties,
            mechanisms=" ".join(conn.broker.auth.mechanisms(conn.transport.peer_cert_cn)).encode(),
            locales=b"en_US",
        ),
    )


def start_ok(conn: Connection, method: ConnectionStartOk) -> None:
    """connection.start-ok: note the client's capabilities, then log in (at once, or after a check)."""
    conn.client_properties = method.client_properties or {}
    capabilities = conn.client_properties.get("capabilities")
    conn.capabilities = capabilities if isinstance(capabilities, dict) else {}
    conn.consumer_cancel_notify = conn.capabilities.get("consumer_cancel_notify") is True
    mechanism = method.mechanism
    conn.auth_mechanism = mechanism
    peer_cert_cn = conn.transport.peer_cert_cn
    if mechanism not in conn.broker.auth.mechanisms(peer_cert_cn):
        raise AMQPConnectionError(
            COMMAND_INVALID,
            f"COMMAND_INVALID - unknown authentication mechanism '{mechanism}'",
        )
    try:
        user = conn.broker.auth.login(mechanism, method.response, conn.peer[0], peer_cert_cn)
    except AuthFailure as exc:
        _refuse(conn, mechanism, exc)
        return
    if isinstance(user, PendingLogin):
        _check_password(conn, user, mechanism)
        return
    conn.user = user
    _tune(conn)


def _check_password(conn: Connection, pending: PendingLogin, mechanism: str) -> None:
    """Have the authenticator schedule the full password check (tens of ms of PBKDF2 on a worker
    thread, fairly among source addresses); reading and frame handling stop until
    `_password_checked`. Inline when the authenticator has no worker threads (test brokers)."""
    auth = conn.broker.auth
    if auth.checks.runner is None:
        _password_checked(conn, pending, mechanism, pending.check())
        return
    conn._authenticating = True
    conn.transport.pause_reading()

    def done(ok: bool | None) -> None:
        conn._login_check = None
        try:
            _password_checked(conn, pending, mechanism, ok)
        except Exception:
            log.exception("internal error; closing the connection", extra={"conn": conn.name})
            conn.close_reason = "internal error"
            finish(conn)

    conn._login_check = auth.submit(pending, done)


def _password_checked(
    conn: Connection, pending: PendingLogin, mechanism: str, ok: bool | None, paused: bool = False
) -> None:
    """The password check answered: refuse, or tune and handle the frames that arrived meanwhile.
    A login refused unchecked (too many checks waiting from its address) is answered only after a
    pause, as RabbitMQ pauses before closing a failed handshake: a flood that reconnects as soon as
    it is refused would otherwise spin through connections as fast as the event loop can accept."""
    if ok is None and not paused and not conn.closed:
        conn.transport.call_later(
            UNCHECKED_REFUSAL_DELAY, lambda: _password_checked(conn, pending, mechanism, None, True)
        )
        return
    waited = conn._authenticating
    conn._authenticating = False
    if conn.closed:
        return
    try:
        conn.user = conn.broker.auth.finish(pending, ok)
    except AuthFailure as exc:
        # One line per login refused unchecked would flood the log with the flood (the scheduler
        # sums them up instead).
        _refuse(conn, mechanism, exc, logging.DEBUG if ok is None else logging.WARNING)
        return
    _tune(conn)
    if waited:
        if not conn._read_paused:
            conn.transport.resume_reading()
        conn._handle_buffered()


def _refuse(conn: Connection, mechanism: str, exc: AuthFailure, level: int = logging.WARNING) -> None:
    conn.broker.auth_attempts.failed += 1
    log.log(
        level,
        "login refused",
        extra={"conn": conn.name, "mechanism": mechanism, "reason": str(exc)},
    )
    conn.close_reason = f"login refused: {exc}"
    if conn.capabilities.get("authentication_failure_close") is True:
        text = (
            f"ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. "
            "For details see the broker logfile."
        )
        conn.send_method(0, ConnectionClose(ACCESS_REFUSED, text, 0, 0))
    finish(conn)


def _tune(conn: Connection) -> None:
    conn.broker.auth_attempts.succeeded += 1  # every login that succeeded comes here
    settings = conn.settings
    conn.send_method(
        0,
        ConnectionTune(
            channel_max=settings.channel_max, frame_max=settings.frame_max, heartbeat=settings.heartbeat
        ),
    )


def open_vhost(conn: Connection, method: ConnectionOpen) -> None:
    """connection.open: the vhost exists, has room for one more connection of the user, and is theirs
    to use; a connection opened during a resource alarm is blocked at once."""
    broker = conn.broker
    refusal = broker.admission() if broker.admission is not None else None
    if refusal is not None:
        raise AMQPConnectionError(CONNECTION_FORCED, f"CONNECTION_FORCED - {refusal}")
    vhost = broker.vhosts.get(method.virtual_host)
    if vhost is None:
        raise AMQPConnectionError(NOT_ALLOWED, f"NOT_ALLOWED - vhost {method.virtual_host} not found")
    broker.check_connection_limit(vhost, conn.user)
    limits = broker.access.user_limits
    if limits and conn.user in limits:
        check_connections(broker.connections, conn.user, limits[conn.user])
    if not broker.access.can_open(conn.user, vhost.name):
        raise AMQPConnectionError(
            NOT_ALLOWED, f"NOT_ALLOWED - access to vhost '{vhost.name}' refused for user '{conn.user}'"
        )
    conn.guard = Guard(broker.access, conn.user, vhost.name)
    conn.vhost = vhost
    broker.churn.connections_opened += 1
    conn.send_method(0, ConnectionOpenOk())
    alarms = broker.alarms
    if alarms.blocking:
        block(conn, alarms.reason)
    log.info(
        "connection open",
        extra={"conn": conn.name, "user": conn.user, "vhost": method.virtual_host},
    )
