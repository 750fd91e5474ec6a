"""One client connection: bytes in, events to the login, the channels, the alarms; timers; teardown.

Strategy: sans-IO. The server feeds bytes to `data_received`; the protocol machine
(`ottermq.amqp.machine`) turns them into events and keeps the protocol's states (handshake, channels in
use, content assembly, negotiation, heartbeat deadlines); this class does what the broker does with them:
channel-0 methods log the client in and open the vhost, other methods and whole messages go to their
`Channel`. Everything sent that changes a protocol state goes out through the machine (`send_method`).
Every protocol failure, the machine's or a handler's, is an `AMQPError`; `closing.fail` is the one place
that turns it into channel.close or connection.close. An unexpected Python exception is logged and closes
the connection with 541, never the process. The login is in login.py, what a resource alarm does to a
connection in alarms.py, errors, close handshakes and teardown in closing.py.

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
    CONNECTION_FORCED,
    FRAME_MIN_SIZE,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
)
from ottermq.amqp.errors import AMQPError, BadProtocolHeader
from ottermq.amqp.events import NEED_DATA, ContentReceived
from ottermq.amqp.frames import HEARTBEAT_FRAME, MethodFrame
from ottermq.amqp.handshake import CLOSING, RUNNING, STATE_NAMES
from ottermq.amqp.heartbeat import HeartbeatDue
from ottermq.amqp.machine import ConnectionMachine
from ottermq.amqp.methods import (
    BasicAck,
    ChannelOpenOk,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionStartOk,
    ConnectionTuneOk,
    ConnectionUpdateSecret,
    ConnectionUpdateSecretOk,
    Method,
)
from ottermq.broker import closing, login
from ottermq.broker.alarms import pause_reading
from ottermq.broker.channel import Channel
from ottermq.broker.checks import Ticket
from ottermq.broker.permissions import Guard
from ottermq.broker.user_limits import channel_refusal

if TYPE_CHECKING:
    from ottermq.broker.broker import Broker
    from ottermq.broker.transport import Transport
    from ottermq.broker.vhost import VHost

log: Final = logging.getLogger("ottermq.broker")


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
        "auth_mechanism",
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
        "publish_epoch",
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
        # The SASL mechanism the client logged in with (PLAIN, AMQPLAIN, EXTERNAL).
        self.auth_mechanism = ""
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
        # Bumped at every batch of input handled and at every method but basic.ack in it: a channel's
        # cached route of a publish run (channel_publish.PublishRun) holds while it does not change.
        self.publish_epoch = 0
        # Resource alarms: armed while one is on; the next publish then pauses reading (alarms.block).
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

    @property
    def read_paused(self) -> bool:
        """True while a resource alarm keeps this connection's socket unread (alarms.py)."""
        return self._read_paused

    def connection_lost(self) -> None:
        """The socket is gone: requeue unacked messages, drop consumers and exclusive queues."""
        if not self.closed:
            if not self.close_reason:
                self.close_reason = "client closed the socket"
            closing.finish(self)

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
                closing.finish(self)
            return
        if state == CLOSING:
            if now >= self._close_deadline:
                self.close_reason = self.close_reason or "no close-ok in time"
                closing.finish(self)
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
            closing.finish(self)
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
            closing.finish(self)
            return
        closing.close(self, reply_code, reply_text, 0, 0)

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
        self.publish_epoch += 1
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
                        acked = type(event.method) is BasicAck
                        if not acked:
                            self.publish_epoch += 1  # it may change what publishes route to
                        number = event.channel
                        if number == 0:
                            self._connection_method(event.method)
                            if self.closed or self._authenticating:
                                return
                            continue
                        channel = channels.get(number)
                        if channel is None:  # the machine checked it is a channel.open
                            self._open_channel(number)
                        elif acked:  # with a consumer's next acks already here, in one go
                            acks = machine.take_acks(number)
                            if acks:
                                channel.on_acks(event.method, acks)
                            else:
                                channel.on_method(event.method)
                        else:
                            channel.on_method(event.method)
                    elif event is NEED_DATA:
                        if machine.header_seen:
                            machine.header_seen = False
                            if self._block_on_publish:
                                # Frames already read are handled; what the client sends next waits.
                                pause_reading(self)
                        return
                    else:
                        login.send_start(self)
            except BadProtocolHeader as exc:
                log.info("bad protocol header; refusing", extra={"conn": self.name, "header": exc.received})
                self.transport.write(PROTOCOL_HEADER)
                self.close_reason = "bad protocol header"
                closing.finish(self)
                return
            except AMQPError as exc:
                if not machine.readable:
                    # The frame reader failed: the byte stream is out of step, nothing more can be read.
                    closing.close(self, exc.reply_code, exc.reply_text, exc.class_id, exc.method_id)
                    closing.finish(self)
                    return
                closing.fail(self, exc, event)
            except Exception:
                if not machine.readable or machine.state == CLOSING:
                    # The reader itself failed (a MemoryError while joining a frame, say): the same bytes
                    # would fail again, forever. Or the connection was closing already. Either way nothing
                    # more can be read: the server drops the socket (see docs/internals.md).
                    raise
                log.exception("internal error; closing the connection", extra={"conn": self.name})
                closing.close(self, INTERNAL_ERROR, "INTERNAL_ERROR", *closing.ids_of(event))

    def _open_channel(self, number: int) -> None:
        limits = self.broker.access.user_limits
        if limits and self.user in limits:
            text = channel_refusal(self.broker.connections, self.user, limits[self.user])
            if text is not None:
                closing.close(self, NOT_ALLOWED, text, 0, 0)  # class and method 0, as RabbitMQ's
                return
        self.channels[number] = Channel(self, number)
        self.broker.churn.channels_opened += 1
        self.send_method(number, ChannelOpenOk())

    def _count_content(self) -> None:
        """Add the change of the machine's bytes of incomplete contents to the broker's total in flight."""
        held = self._machine.content_bytes
        self._memory.in_flight += held - self.content_bytes
        self.content_bytes = held

    def _handle_buffered(self) -> None:
        """Handle the frames read while the login's password check ran (as `data_received` handles a read)."""
        self._in_receive = True
        try:
            self._process()
        finally:
            self._in_receive = False
        if self._deferred:
            self._run_deferred()
        if self._machine.content_bytes != self.content_bytes:
            self._count_content()

    def _run_deferred(self) -> None:
        callbacks, self._deferred = self._deferred, []
        for callback in callbacks:
            if self.closed:
                return
            try:
                callback()
            except AMQPError as exc:
                closing.fail(self, exc, None)
            except Exception:
                log.exception("internal error; closing the connection", extra={"conn": self.name})
                closing.close(self, INTERNAL_ERROR, "INTERNAL_ERROR", 0, 0)

    # -- channel 0 -------------------------------------------------------------------------------------

    def _connection_method(self, method: Method) -> None:
        """A channel-0 method the machine found legal in its state."""
        kind = type(method)
        if kind is ConnectionCloseOk:  # the answer to our connection.close
            closing.finish(self)
        elif kind is ConnectionClose and self._machine.state == CLOSING:
            self.send_method(0, ConnectionCloseOk())  # the closes crossed: answer, and wait for close-ok
        elif kind is ConnectionClose:
            closing.client_closed(self)
        elif kind is ConnectionStartOk:
            login.start_ok(self, method)  # type: ignore[arg-type]
        elif kind is ConnectionTuneOk:
            # Checked against our tune by the machine.
            machine = self._machine
            self.frame_max = machine.frame_max
            self.channel_max = machine.channel_max
            self.heartbeat = machine.heartbeat
        elif kind is ConnectionOpen:
            login.open_vhost(self, method)  # type: ignore[arg-type]
        elif kind is ConnectionUpdateSecret:
            self.send_method(0, ConnectionUpdateSecretOk())
