"""The AMQP 0.9.1 protocol state machine of one server-side connection: bytes in, events out.

Strategy: sans-IO, after h11. `receive_data(data)` buffers bytes; `next_event()` returns the next thing the
peer did that the broker must act on (events.py), or NEED_DATA. Everything the broker sends that changes a
state goes through `send(channel, method) -> bytes`, so the machine sees both sides. The machine owns what
the protocol says, the broker what it does with it:

- the protocol header, then the connection states: starting (connection.start sent) -> tuning (tune sent)
  -> opening (tune-ok received and checked) -> running (open-ok sent) -> closing (connection.close sent:
  only close and close-ok are read) -> closed (close-ok sent or received);
- which frames are legal in each state, refused with RabbitMQ's codes and texts: 505 UNEXPECTED_FRAME
  (content where none belongs), 504 CHANNEL_ERROR (a method the state does not expect), 530 NOT_ALLOWED
  (tune-ok out of bounds, too many channels), 540 (basic.publish with immediate), 501 (a body larger than
  its header said), and whatever the frame reader refuses (501, 502, 540);
- channel numbers in use against channel_max, and each channel's state: open, or closing (channel.close
  sent: only close and close-ok are read) until close-ok;
- content (assembled here on the hot path, content.py off it): basic.publish, its header, its body frames
  are one `ContentReceived`; the body size is checked against `max_body_size` at the header (406, soft)
  and against the header's size at every body frame; bytes of incomplete bodies are counted
  (`content_bytes`) and bounded per connection by `content_limit` when several messages are under way at
  once (406, soft, on the channel that crossed it);
- frame_max / channel_max / heartbeat negotiation, and the heartbeat deadlines (`heartbeats`).

Errors are raised by `next_event()` as `AMQPError`s with the class and method ids they concern and, for
content frames, the channel. The broker decides channel.close (soft codes) or connection.close and sends
it through `send`, which moves the machine on. After the frame reader failed (`readable` is False) the
byte stream is out of step: nothing more can be read.

The per-message frames the broker sends (basic.deliver, get-ok, return, ack, nack) change no state: the
broker writes them with the `frames.encode_*` functions without passing them here.
"""

from typing import Any, Final

from ottermq.amqp.basic_hot import BasicPublish
from ottermq.amqp.constants import (
    CHANNEL_ERROR,
    CLASS_BASIC,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    UNEXPECTED_FRAME,
)
from ottermq.amqp.content import (
    EXPECTED_BODY,
    EXPECTED_HEADER,
    PHASE_BODY,
    PHASE_CLOSING,
    PHASE_HEADER,
    PHASE_IDLE,
    PUBLISH_IDS,
    ChannelState,
    body_part,
    drop,
    odd_header,
    stray_content,
)
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.events import NEED_DATA, ContentReceived, Event
from ottermq.amqp.frame_encode import encode_method_frame
from ottermq.amqp.frames import BodyFrame, FrameReader, HeaderFrame, HeartbeatFrame, MethodFrame
from ottermq.amqp.handshake import (
    CLOSED,
    CLOSING,
    OPENING,
    RUNNING,
    STARTING,
    TUNING,
    WAITING_HEADER,
    negotiate,
    reads,
)
from ottermq.amqp.heartbeat import HeartbeatClock
from ottermq.amqp.method import Method
from ottermq.amqp.methods import (
    ChannelClose,
    ChannelCloseOk,
    ChannelOpen,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpenOk,
    ConnectionTune,
    ConnectionTuneOk,
)

__all__ = ["ConnectionMachine"]

_CHANNEL_ID_MAX: Final = 65535
_new: Final = object.__new__
# What the broker sends that moves a state (every other method passes through `send` untouched).
_STATEFUL_SENDS: Final = frozenset(
    (ChannelClose, ChannelCloseOk, ConnectionTune, ConnectionOpenOk, ConnectionClose, ConnectionCloseOk)
)


class ConnectionMachine:
    """The protocol state of one AMQP connection, server side (see the module docstring)."""

    __slots__ = (
        "_channels",
        "_next_frame",
        "_offered",
        "_reader",
        "_take_content",
        "channel_max",
        "content_bytes",
        "content_limit",
        "frame_max",
        "header_seen",
        "heartbeats",
        "max_body_size",
        "readable",
        "state",
    )

    def __init__(self, max_body_size: int, content_limit: int) -> None:
        self._reader = FrameReader()
        # Until tune-ok, frames are bounded by the protocol minimum, as RabbitMQ does.
        self._reader.frame_max = FRAME_MIN_SIZE
        self._next_frame = self._reader.next_frame
        self._take_content = self._reader.take_content
        self.state = WAITING_HEADER
        self._channels: dict[int, ChannelState] = {}
        # The server's connection.tune (channel_max, frame_max): the bounds of the client's tune-ok.
        self._offered = (0, 0)
        self.frame_max = FRAME_MIN_SIZE
        self.channel_max = 0
        self.heartbeats = HeartbeatClock()
        self.max_body_size = max_body_size
        self.content_limit = content_limit
        self.content_bytes = 0
        # Set at every content header taken; the owner clears it (a blocked publisher pauses at its next one).
        # A flag, not a count: an int past 256 would be a new object per message.
        self.header_seen = False
        self.readable = True

    @property
    def heartbeat(self) -> int:
        """The negotiated heartbeat interval in seconds (0: none)."""
        return self.heartbeats.interval

    @property
    def buffered(self) -> int:
        """Bytes received and not handed over yet: incomplete frames and incomplete contents."""
        return self._reader.buffered + self.content_bytes

    @property
    def content_in_progress(self) -> bool:
        """True while a publish on some channel waits for its header or body frames."""
        return any(channel.phase in (PHASE_HEADER, PHASE_BODY) for channel in self._channels.values())

    def channel_in_use(self, number: int) -> bool:
        """True from channel.open until the channel's close handshake is over."""
        return number in self._channels

    # -- bytes in, events out -----------------------------------------------------------------------------

    def take_acks(self, number: int) -> list[tuple[int, bool]]:
        """After a basic.ack event on channel `number`: (delivery tag, multiple) of the basic.ack frames on
        it complete next in the buffer, which `next_event` would hand over one by one as they are; []
        when the next frame is anything else or the channel is not idle."""
        channel = self._channels.get(number)
        if channel is None or channel.phase != PHASE_IDLE:
            return []
        return self._reader.take_acks(number)

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; `next_event` takes them apart."""
        self._reader.feed(data)

    def next_event(self) -> Event:
        """The next event, or NEED_DATA once every complete frame received is handled."""
        next_frame = self._next_frame
        take_content = self._take_content
        channels = self._channels
        while True:
            # Any: dispatched on type(frame) below, which mypy does not narrow through a variable.
            frame: Any
            try:
                frame = next_frame()
            except BaseException:
                self.readable = False
                raise
            if frame is None:
                return NEED_DATA
            kind = type(frame)
            # The hot path first: a publish is method, header, body on an open channel.
            if kind is MethodFrame:
                channel = channels.get(frame.channel)  # never channel 0
                if channel is not None and channel.phase == PHASE_IDLE:
                    method = frame.method
                    if type(method) is not BasicPublish:
                        return frame  # type: ignore[no-any-return]
                    if method.immediate:
                        raise AMQPConnectionError(
                            NOT_IMPLEMENTED, "NOT_IMPLEMENTED - immediate=true", *PUBLISH_IDS
                        )
                    taken = take_content(frame.channel, self.max_body_size)
                    if taken is not None:  # header and body already here: the whole message at once
                        self.header_seen = True
                        whole = _new(ContentReceived)
                        whole.channel = frame.channel
                        whole.method = method
                        whole.properties, whole.body = taken
                        return whole
                    channel.method = method
                    channel.phase = PHASE_HEADER
                    continue
                event = self._method(frame, channel)
                if event is not None:
                    return event
            elif kind is HeaderFrame:
                number = frame.channel
                channel = channels.get(number)
                if channel is None or channel.phase != PHASE_HEADER:
                    stray_content(self, number, channel, PHASE_HEADER)
                    continue
                body_size = frame.body_size
                if not 0 < body_size <= self.max_body_size or frame.class_id != CLASS_BASIC:
                    content = odd_header(self, number, channel, frame)
                    if content is not None:
                        return content
                    continue
                self.header_seen = True
                channel.properties = frame.properties
                channel.remaining = body_size
                channel.phase = PHASE_BODY
            elif kind is BodyFrame:
                number = frame.channel
                channel = channels.get(number)
                if channel is None or channel.phase != PHASE_BODY:
                    stray_content(self, number, channel, PHASE_BODY)
                    continue
                payload = frame.payload
                remaining = channel.remaining - len(payload)
                if remaining or channel.parts is not None:
                    content = body_part(self, number, channel, payload, remaining)
                    if content is not None:
                        return content
                    continue
                channel.phase = PHASE_IDLE
                # Built field by field: calling the class would run its __init__ through type.__call__, which
                # CPython 3.11 does not inline (as much as the rest of the message's frame handling).
                content = _new(ContentReceived)
                content.channel = number
                content.method = channel.method  # type: ignore[assignment]
                content.properties = channel.properties
                content.body = payload
                return content
            elif kind is HeartbeatFrame:
                continue
            else:  # the protocol header: the reader returns it once, before any frame
                self.state = STARTING
                return frame  # type: ignore[no-any-return]

    def _method(self, frame: MethodFrame, channel: ChannelState | None) -> MethodFrame | None:
        """A method frame off the hot path: channel 0, a new channel, a closing one, or content expected."""
        number = frame.channel
        method = frame.method
        if not number:
            return self._connection_method(frame)
        if channel is None:
            return self._channel_open(frame)
        if channel.phase == PHASE_CLOSING:
            kind = type(method)
            if kind is ChannelCloseOk:
                del self._channels[number]
                return frame
            return frame if kind is ChannelClose else None
        text = EXPECTED_HEADER if channel.phase == PHASE_HEADER else EXPECTED_BODY
        raise AMQPConnectionError(UNEXPECTED_FRAME, text, *PUBLISH_IDS)

    def _channel_open(self, frame: MethodFrame) -> MethodFrame | None:
        method = frame.method
        if self.state != RUNNING:
            if self.state == CLOSING:
                return None
            raise _error(UNEXPECTED_FRAME, f"UNEXPECTED_FRAME - {method.NAME} before connection.open", method)
        # channel_max bounds how many channels are open at once, not their numbers: as in RabbitMQ, any
        # number 1..65535 may be opened (aiormq starts at 65535) while fewer than channel_max are open.
        in_use = len(self._channels)
        channel_max = self.channel_max or _CHANNEL_ID_MAX
        if in_use >= channel_max:
            raise _error(
                NOT_ALLOWED,
                f"NOT_ALLOWED - number of channels opened ({in_use}) "
                f"has reached the negotiated channel_max ({channel_max})",
                method,
            )
        if type(method) is not ChannelOpen:
            raise _error(CHANNEL_ERROR, "CHANNEL_ERROR - expected 'channel.open'", method)
        self._channels[frame.channel] = ChannelState()
        return frame

    def _connection_method(self, frame: MethodFrame) -> MethodFrame | None:
        method = frame.method
        if not reads(self.state, method):
            return None
        kind = type(method)
        if kind is ConnectionTuneOk:
            channel_max, frame_max = self._offered
            self.channel_max, self.frame_max = negotiate(channel_max, frame_max, method)  # type: ignore[arg-type]
            # The client's interval, as RabbitMQ takes it (the server's offer is only a suggestion).
            self.heartbeats.interval = method.heartbeat  # type: ignore[attr-defined]
            self._reader.frame_max = self.frame_max
            self.state = OPENING
        elif kind is ConnectionCloseOk:
            self.state = CLOSED
        return frame

    # -- events in, bytes out -----------------------------------------------------------------------------

    def send(self, channel: int, method: Method) -> bytes:
        """The frame for a method the broker sends, after moving the states it changes."""
        kind = type(method)
        if kind in _STATEFUL_SENDS:
            self._sent(channel, kind, method)
        return encode_method_frame(channel, method)

    def _sent(self, number: int, kind: type[Method], method: Method) -> None:
        if number:
            channel = self._channels.get(number)
            if channel is None:
                return
            if kind is ChannelClose:
                channel.phase = PHASE_CLOSING
                drop(self, channel)
            elif channel.phase != PHASE_CLOSING:
                # close-ok to the client's close. After our own close the number stays in use until the
                # client's close-ok, which crosses ours.
                del self._channels[number]
                drop(self, channel)
        elif kind is ConnectionTune:
            self._offered = (method.channel_max, method.frame_max)  # type: ignore[attr-defined]
            self.state = TUNING
        elif kind is ConnectionOpenOk:
            self.state = RUNNING
        else:
            if kind is ConnectionClose:
                self.state = CLOSING
            elif self.state != CLOSING:
                # close-ok to the client's close. After our own close we wait for the client's close-ok.
                self.state = CLOSED
            for channel in self._channels.values():
                drop(self, channel)
            self._channels.clear()


def _error(code: int, text: str, method: Method) -> AMQPConnectionError:
    return AMQPConnectionError(code, text, method.CLASS_ID, method.METHOD_ID)
