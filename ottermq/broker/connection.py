"""One client connection: login, vhost, channels, resource alarms, errors and teardown.

Strategy: sans-IO. The server feeds bytes to `data_received`; the protocol machine
(`ottermq.amqp.machine`) turns them into events and keeps the protocol's states (handshake, channels in
use, content assembly, negotiation, heartbeat deadlines); this class does what the broker does with them:
channel-0 methods log the client in and open the vhost, other methods and whole messages go to their
`Channel`. Everything sent that changes a protocol state goes out through the machine (`send_method`).
Every protocol failure, the machine's or a handler's, is an `AMQPError`; `_fail` is the one place that
turns it into channel.close (soft codes, on an open channel) or connection.close (hard codes, or during the
handshake), filling in the class and method of the event that caused it. An unexpected Python exception is
logged and closes the connection with 541, never the process.

Time comes from `tick(now)`, which the server calls about once a second: heartbeats (the machine's
deadlines), the handshake and close timeouts. Traffic is noted with two flags set per read/write and
turned into timestamps there, so the per-message path never reads a clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    FRAME_MIN_SIZE,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
)
from ottermq.amqp.errors import AMQPConnectionError, AMQPError, BadProtocolHeader
from ottermq.amqp.events import NEED_DATA, ContentReceived, Event
from ottermq.amqp.frames import HEARTBEAT_FRAME, MethodFrame
from ottermq.amqp.handshake import CLOSING, RUNNING, STATE_NAMES, TUNING
from ottermq.amqp.heartbeat import HeartbeatDue
from ottermq.amqp.machine import ConnectionMachine
from ottermq.amqp.methods import (
    ChannelOpenOk,
    ConnectionBlocked,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionUnblocked,
    ConnectionUpdateSecret,
    ConnectionUpdateSecretOk,
    Method,
)
from ottermq.broker.auth import AuthFailure, PendingLogin
from ottermq.broker.channel import Channel
from ottermq.broker.checks import UNCHECKED_REFUSAL_DELAY, Ticket
from ottermq.broker.permissions import Guard

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.transport import Transport
    from ottermq.broker.vhost import VHost

log: Final = logging.getLogger("ottermq.broker")

# Codes the spec calls soft: they close a channel, not the connection.
SOFT_CODES: Final = frozenset({311, 312, 313, 403, 404, 405, 406})

# How long the socket stays open after our close-ok, waiting for the client to close it first.
_CLOSE_OK_LINGER: Final = 5.0


class Connection:
    """The protocol state of one AMQP connection."""

    __slots__ = (
        "_authenticating",
        "_block_on_publish",
        "_blocked_sent",
        "_close_deadline",
        "_created",
        "_deferred",
        "_in_receive",
        "_login_check",
        "_machine",
        "_memory",
        "_read_paused",
        "_received",
        "broker",
        "capabilities",
        "channel_max",
        "channels",
        "client_properties",
        "close_reason",
        "closed",
        "consumer_cancel_notify",
        "content_bytes",
        "frame_max",
        "guard",
        "heartbeat",
        "name",
        "peer",
        "sent",
        "settings",
        "transport",
        "user",
        "vhost",
    )

    def __init__(self, broker: Broker, transport: Transport, peer: tuple[str, int]) -> None:
        self.broker = broker
        self.settings = broker.settings
        self.transport = transport
        self.peer = peer
        self.name = f"{peer[0]}:{peer[1]}"
        self._memory = broker.memory
        self._machine = ConnectionMachine(self.settings.max_message_size, self._memory.content_limit)
        self.channels: dict[int, Channel] = {}
        self.frame_max = FRAME_MIN_SIZE
        self.channel_max = self.settings.channel_max
        self.heartbeat = 0
        self.user = ""
        self.vhost: VHost | None = None
        # Access checks for the user on the vhost, from connection.open on.
        self.guard: Guard | None = None
        self.client_properties: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self.consumer_cancel_notify = False
        self.closed = False
        self.close_reason = ""
        self.sent = False
        self._received = False
        self._created = time.monotonic()
        self._close_deadline = 0.0
        self._in_receive = False
        self._deferred: list[Callable[[], None]] = []
        # Resource alarms: armed while one is on; the next publish then pauses reading (see block()).
        self._block_on_publish = False
        self._blocked_sent = False
        self._read_paused = False
        # A password check runs on a worker thread: no frame is handled (nor read) until it answers.
        self._authenticating = False
        self._login_check: Ticket | None = None
        # Bytes of incomplete contents over all channels (the machine's count as last added to the broker's
        # memory.in_flight; see _count_content).
        self.content_bytes = 0

    def __repr__(self) -> str:
        return f"Connection({self.name}, {self.state})"

    @property
    def state(self) -> str:
        """The state's name (for logs, the management API and tests)."""
        return "closed" if self.closed else STATE_NAMES[self._machine.state]

    # -- the server's API ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Consume bytes from the socket; replies are written to the transport."""
        if self.closed:
            return
        self._received = True
        self._in_receive = True
        machine = self._machine
        # The limit may be set after the connection was made (the resource monitor sets it at start).
        machine.content_limit = self._memory.content_limit
        try:
            machine.receive_data(data)
            self._process()
        finally:
            self._in_receive = False
        if self._deferred:
            self._run_deferred()
        if machine.content_bytes != self.content_bytes:
            self._count_content()
        if self._memory.over_estimate():
            # What this read added may have taken the broker past its memory high-water mark: sample now,
            # not at the next timer tick, so a flood overshoots the mark by one read at most.
            self._memory.check()

    @property
    def input_buffered(self) -> int:
        """Bytes received but not handled yet: incomplete frames, and contents not yet complete."""
        return self._machine.buffered

    def connection_lost(self) -> None:
        """The socket is gone: requeue unacked messages, drop consumers and exclusive queues."""
        if not self.closed:
            if not self.close_reason:
                self.close_reason = "client closed the socket"
            self._finish()

    def resume_writing(self) -> None:
        """The socket drained: deliveries held back for backpressure may continue."""
        for channel in list(self.channels.values()):
            channel.dispatch_all()

    def tick(self, now: float) -> None:
        """Timers: handshake and close timeouts, heartbeats both ways."""
        if self.closed:
            return
        state = self._machine.state
        if state < RUNNING:
            if now - self._created >= self.settings.handshake_timeout:
                log.warning("handshake timeout; closing", extra={"conn": self.name, "state": self.state})
                self.close_reason = "handshake timeout"
                self._finish()
            return
        if state == CLOSING:
            if now >= self._close_deadline:
                self.close_reason = self.close_reason or "no close-ok in time"
                self._finish()
            return
        # A socket we stopped reading cannot show the client's heartbeats: as RabbitMQ, no timeout.
        received = self._received or self._read_paused
        sent = self.sent
        self._received = self.sent = False
        due = self._machine.heartbeats.poll(now, received, sent)
        if due is HeartbeatDue.PEER_DEAD:
            interval = self.heartbeat
            log.warning(
                "missed heartbeats from client; closing",
                extra={"conn": self.name, "timeout_s": interval},
            )
            self.close_reason = f"missed heartbeats from client, timeout: {interval}s"
            self._finish()
        elif due is HeartbeatDue.SEND:
            self.transport.write(HEARTBEAT_FRAME)

    def shutdown(
        self,
        reply_code: int = CONNECTION_FORCED,
        reply_text: str = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
    ) -> None:
        """Close from the broker's side: connection.close, then the socket after close-ok or a timeout."""
        state = self._machine.state
        if self.closed or state == CLOSING:
            return
        if state < RUNNING:
            self.close_reason = reply_text
            self._finish()
            return
        self._close(reply_code, reply_text, 0, 0)

    def block(self, reason: str) -> None:
        """A resource alarm went on: notify the client (if it asked) and pause reading at its next publish,
        or now if a message is under way on one of its channels (its further body frames are not read)."""
        if self.closed:
            return
        self._block_on_publish = True
        if self._machine.content_in_progress:
            self._pause_for_alarm()
        if (
            self._machine.state == RUNNING
            and not self._blocked_sent
            and self.capabilities.get("connection.blocked") is True
        ):
            self._blocked_sent = True
            self.send_method(0, ConnectionBlocked(reason))

    def unblock(self) -> None:
        """Every resource alarm cleared: connection.unblocked, and read from the socket again."""
        self._block_on_publish = False
        if self.closed:
            return
        if self._blocked_sent:
            self._blocked_sent = False
            self.send_method(0, ConnectionUnblocked())
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()

    @property
    def read_paused(self) -> bool:
        """True while a resource alarm keeps this connection's socket unread."""
        return self._read_paused

    def finish_content(self) -> None:
        """Read again while the alarm stays on, until the next content header: the messages under way on
        this connection complete. The memory monitor asks this of one connection at a time when content in
        flight alone keeps the alarm on, which nothing else could clear."""
        if self._read_paused and not self.closed:
            self._read_paused = False
            log.info("publisher read again to complete its messages under way", extra={"conn": self.name})
            self.transport.resume_reading()

    def _pause_for_alarm(self) -> None:
        # Frames already read are still handled; what the client sends next waits in its TCP window.
        if not self._read_paused:
            self._read_paused = True
            log.info("publisher blocked by a resource alarm", extra={"conn": self.name})
            self.transport.pause_reading()

    # -- used by channels ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes to the peer (counts as traffic for heartbeats)."""
        self.sent = True
        self.transport.write(data)

    def send_method(self, channel: int, method: Method) -> None:
        """Encode and send one method frame (through the machine: it may change a protocol state)."""
        self.sent = True
        machine = self._machine
        self.transport.write(machine.send(channel, method))
        if machine.content_bytes != self.content_bytes:
            self._count_content()  # a channel.close or connection.close dropped incomplete contents

    def defer(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the current batch of input is handled (or on the next loop turn)."""
        self._deferred.append(callback)
        if not self._in_receive and len(self._deferred) == 1:
            self.transport.call_later(0, self._run_deferred)

    def channel_closed(self, number: int) -> None:
        """A channel finished its close handshake: forget it so the number can be reused."""
        self.channels.pop(number, None)

    # -- event dispatch --------------------------------------------------------------------------------

    def _process(self) -> None:
        machine = self._machine
        next_event = machine.next_event
        channels = self.channels
        while not self.closed and not self._authenticating:
            # Any: dispatched on type(event) below, which mypy does not narrow through a variable.
            event: Any = None
            try:
                while True:
                    event = None
                    event = next_event()
                    kind = type(event)
                    if kind is ContentReceived:
                        channels[event.channel].on_content(event.method, event.properties, event.body)
                    elif kind is MethodFrame:
                        number = event.channel
                        if number == 0:
                            self._connection_method(event.method)
                            if self.closed or self._authenticating:
                                return
                            continue
                        channel = channels.get(number)
                        if channel is None:  # the machine checked it is a channel.open
                            self._open_channel(number)
                        else:
                            channel.on_method(event.method)
                    elif event is NEED_DATA:
                        if machine.header_seen:
                            machine.header_seen = False
                            if self._block_on_publish:
                                # Frames already read are handled; what the client sends next waits.
                                self._pause_for_alarm()
                        return
                    else:
                        self._on_protocol_header()
            except BadProtocolHeader as exc:
                log.info("bad protocol header; refusing", extra={"conn": self.name, "header": exc.received})
                self.transport.write(PROTOCOL_HEADER)
                self.close_reason = "bad protocol header"
                self._finish()
                return
            except AMQPError as exc:
                if not machine.readable:
                    # The frame reader failed: the byte stream is out of step, nothing more can be read.
                    self._close(exc.reply_code, exc.reply_text, exc.class_id, exc.method_id)
                    self._finish()
                    return
                self._fail(exc, event)
            except Exception:
                if not machine.readable or machine.state == CLOSING:
                    # The reader itself failed (a MemoryError while joining a frame, say): the same bytes
                    # would fail again, forever. Or the connection was closing already. Either way nothing
                    # more can be read: the server drops the socket (see docs/internals.md).
                    raise
                log.exception("internal error; closing the connection", extra={"conn": self.name})
                self._close(INTERNAL_ERROR, "INTERNAL_ERROR", *_ids_of(event))

    def _open_channel(self, number: int) -> None:
        self.channels[number] = Channel(self, number)
        self.send_method(number, ChannelOpenOk())

    # -- errors ----------------------------------------------------------------------------------------

    def _fail(self, exc: AMQPError, event: Event | None) -> None:
        """The one place where an error becomes channel.close or connection.close. `event` is the one whose
        handling raised it (None: the machine refused a frame, or a deferred callback failed)."""
        class_id, method_id = exc.class_id, exc.method_id
        if not class_id:
            class_id, method_id = _ids_of(event)
        number = event.channel if isinstance(event, MethodFrame | ContentReceived) else exc.channel
        channel = self.channels.get(number) if number else None
        if exc.reply_code in SOFT_CODES and channel is not None and self._machine.state == RUNNING:
            log.info(
                "channel error",
                extra={"conn": self.name, "channel": number, "code": exc.reply_code, "text": exc.reply_text},
            )
            channel.fail(exc.reply_code, exc.reply_text, class_id, method_id)
            return
        unauthenticated = self._machine.state < TUNING
        self._close(exc.reply_code, exc.reply_text, class_id, method_id)
        if unauthenticated:
            # A peer that has not logged in is not waited for; RabbitMQ drops it right after the close.
            self._finish()

    def _close(self, code: int, text: str, class_id: int, method_id: int) -> None:
        """Send connection.close and wait (bounded) for close-ok; channels end now."""
        if self.closed or self._machine.state == CLOSING:
            return
        if code != CONNECTION_FORCED:
            log.warning(
                "connection error",
                extra={"conn": self.name, "state": self.state, "code": code, "text": text},
            )
        self.close_reason = text
        self._end_channels()
        timeout = (
            self.heartbeat
            if 0 < self.heartbeat < self.settings.close_timeout
            else self.settings.close_timeout
        )
        self._close_deadline = time.monotonic() + timeout
        self.send_method(0, ConnectionClose(code, text, class_id, method_id))

    def _end_channels(self) -> None:
        channels = list(self.channels.values())
        self.channels.clear()
        for channel in channels:
            channel.release()

    def _finish(self, linger: float = 0.0) -> None:
        """Everything ends: channels, exclusive queues, the socket.

        With `linger`, the socket stays open that long (or until the peer closes it): after our close-ok the
        client closes first, as with RabbitMQ; closing at once makes some clients read EOF before close-ok.
        """
        if self.closed:
            return
        self.closed = True
        # What the machine holds of incomplete contents goes with it.
        self._memory.in_flight -= self.content_bytes
        self.content_bytes = 0
        if self._login_check is not None:
            self.broker.auth.cancel(self._login_check)  # nobody waits for it any more
            self._login_check = None
        try:
            self._end_channels()
            if self.vhost is not None:
                self.vhost.owner_closed(self)
        finally:
            self.broker.connection_closed(self)
            if linger > 0:
                self.transport.call_later(linger, self.transport.close)
            else:
                self.transport.close()

    def _count_content(self) -> None:
        """Add the change of the machine's bytes of incomplete contents to the broker's total in flight."""
        held = self._machine.content_bytes
        self._memory.in_flight += held - self.content_bytes
        self.content_bytes = held

    def _run_deferred(self) -> None:
        callbacks, self._deferred = self._deferred, []
        for callback in callbacks:
            if self.closed:
                return
            try:
                callback()
            except AMQPError as exc:
                self._fail(exc, None)
            except Exception:
                log.exception("internal error; closing the connection", extra={"conn": self.name})
                self._close(INTERNAL_ERROR, "INTERNAL_ERROR", 0, 0)

    # -- channel 0 -------------------------------------------------------------------------------------

    def _on_protocol_header(self) -> None:
        self.send_method(
            0,
            ConnectionStart(
                version_major=0,
                version_minor=9,
                server_properties=self.broker.server_properties,
                mechanisms=" ".join(self.broker.auth.mechanisms(self.transport.peer_cert_cn)).encode(),
                locales=b"en_US",
            ),
        )

    def _connection_method(self, method: Method) -> None:
        """A channel-0 method the machine found legal in its state."""
        kind = type(method)
        if kind is ConnectionCloseOk:  # the answer to our connection.close
            self._finish()
        elif kind is ConnectionClose and self._machine.state == CLOSING:
            self.send_method(0, ConnectionCloseOk())  # the closes crossed: answer, and wait for close-ok
        elif kind is ConnectionClose:
            self.close_reason = "client closed the connection"
            self._end_channels()
            self.send_method(0, ConnectionCloseOk())
            self._finish(linger=_CLOSE_OK_LINGER)
        elif kind is ConnectionStartOk:
            self._start_ok(method)  # type: ignore[arg-type]
        elif kind is ConnectionTuneOk:
            # Checked against our tune by the machine.
            machine = self._machine
            self.frame_max = machine.frame_max
            self.channel_max = machine.channel_max
            self.heartbeat = machine.heartbeat
        elif kind is ConnectionOpen:
            self._open(method)  # type: ignore[arg-type]
        elif kind is ConnectionUpdateSecret:
            self.send_method(0, ConnectionUpdateSecretOk())

    def _start_ok(self, method: ConnectionStartOk) -> None:
        self.client_properties = method.client_properties or {}
        capabilities = self.client_properties.get("capabilities")
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        self.consumer_cancel_notify = self.capabilities.get("consumer_cancel_notify") is True
        mechanism = method.mechanism
        peer_cert_cn = self.transport.peer_cert_cn
        if mechanism not in self.broker.auth.mechanisms(peer_cert_cn):
            raise AMQPConnectionError(
                COMMAND_INVALID,
                f"COMMAND_INVALID - unknown authentication mechanism '{mechanism}'",
            )
        try:
            user = self.broker.auth.login(mechanism, method.response, self.peer[0], peer_cert_cn)
        except AuthFailure as exc:
            self._refuse_login(mechanism, exc)
            return
        if isinstance(user, PendingLogin):
            self._check_password(user, mechanism)
            return
        self.user = user
        self._tune()

    def _check_password(self, pending: PendingLogin, mechanism: str) -> None:
        """Have the authenticator schedule the full password check (tens of ms of PBKDF2 on a worker
        thread, fairly among source addresses); reading and frame handling stop until
        `_password_checked`. Inline when the authenticator has no worker threads (test brokers)."""
        auth = self.broker.auth
        if auth.checks.runner is None:
            self._password_checked(pending, mechanism, pending.check())
            return
        self._authenticating = True
        self.transport.pause_reading()

        def done(ok: bool | None) -> None:
            self._login_check = None
            try:
                self._password_checked(pending, mechanism, ok)
            except Exception:
                log.exception("internal error; closing the connection", extra={"conn": self.name})
                self.close_reason = "internal error"
                self._finish()

        self._login_check = auth.submit(pending, done)

    def _password_checked(
        self, pending: PendingLogin, mechanism: str, ok: bool | None, paused: bool = False
    ) -> None:
        """The password check answered: refuse, or tune and handle the frames that arrived meanwhile.
        A login refused unchecked (too many checks waiting from its address) is answered only after a
        pause, as RabbitMQ pauses before closing a failed handshake: a flood that reconnects as soon as
        it is refused would otherwise spin through connections as fast as the event loop can accept."""
        if ok is None and not paused and not self.closed:
            self.transport.call_later(
                UNCHECKED_REFUSAL_DELAY, lambda: self._password_checked(pending, mechanism, None, True)
            )
            return
        waited = self._authenticating
        self._authenticating = False
        if self.closed:
            return
        try:
            self.user = self.broker.auth.finish(pending, ok)
        except AuthFailure as exc:
            # One line per login refused unchecked would flood the log with the flood (the scheduler
            # sums them up instead).
            self._refuse_login(mechanism, exc, logging.DEBUG if ok is None else logging.WARNING)
            return
        self._tune()
        if waited:
            if not self._read_paused:
                self.transport.resume_reading()
            self._in_receive = True
            try:
                self._process()
            finally:
                self._in_receive = False
            if self._deferred:
                self._run_deferred()
            if self._machine.content_bytes != self.content_bytes:
                self._count_content()

    def _refuse_login(self, mechanism: str, exc: AuthFailure, level: int = logging.WARNING) -> None:
        log.log(
            level,
            "login refused",
            extra={"conn": self.name, "mechanism": mechanism, "reason": str(exc)},
        )
        self.close_reason = f"login refused: {exc}"
        if self.capabilities.get("authentication_failure_close") is True:
            text = (
                f"ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. "
                "For details see the broker logfile."
            )
            self.send_method(0, ConnectionClose(ACCESS_REFUSED, text, 0, 0))
        self._finish()

    def _tune(self) -> None:
        settings = self.settings
        self.send_method(
            0,
            ConnectionTune(
                channel_max=settings.channel_max, frame_max=settings.frame_max, heartbeat=settings.heartbeat
            ),
        )

    def _open(self, method: ConnectionOpen) -> None:
        vhost = self.broker.vhosts.get(method.virtual_host)
        if vhost is None:
            raise AMQPConnectionError(NOT_ALLOWED, f"NOT_ALLOWED - vhost {method.virtual_host} not found")
        self.broker.check_connection_limit(vhost, self.user)
        if not self.broker.access.can_open(self.user, vhost.name):
            raise AMQPConnectionError(
                NOT_ALLOWED, f"NOT_ALLOWED - access to vhost '{vhost.name}' refused for user '{self.user}'"
            )
        self.guard = Guard(self.broker.access, self.user, vhost.name)
        self.vhost = vhost
        self.send_method(0, ConnectionOpenOk())
        alarms = self.broker.alarms
        if alarms.blocking:
            self.block(alarms.reason)
        log.info(
            "connection open",
            extra={"conn": self.name, "user": self.user, "vhost": method.virtual_host},
        )


def _ids_of(event: Event | None) -> tuple[int, int]:
    """Class and method id of the method an event carries (a message: its basic.publish)."""
    if isinstance(event, MethodFrame | ContentReceived):
        return event.method.CLASS_ID, event.method.METHOD_ID
    return 0, 0
