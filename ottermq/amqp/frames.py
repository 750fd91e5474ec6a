"""AMQP frames: the values a peer sends, and ``FrameReader``, the sans-IO parser of a byte stream.

Strategy: ``feed`` keeps the bytes as they came (a ``bytes`` object) while no frame straddles two
reads, so complete frames are sliced straight out of the received chunk: the only copy is the
payload slice. Chunks of a frame split across reads wait in a list and are joined once, when the
frame can complete. Each frame is checked as RabbitMQ checks it: known type, size within
``frame_max``, end octet 0xCE, heartbeats on channel 0 with no payload; method frames are decoded
into their method value at once. ``next_frame`` has a short fast path for a complete, well-framed
frame; everything else (partial data, the protocol header, errors) goes through ``_next_slow``.

Errors are ``AMQPConnectionError``: 501 FRAME_ERROR for framing, 502 SYNTAX_ERROR for undecodable
method fields, 540 NOT_IMPLEMENTED for a class/method id that does not exist (RabbitMQ's lookup
exits without a connection.close for that case; 540 is the reply code that names it).
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Final

from ottermq.amqp.constants import (
    FRAME_BODY,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    NOT_IMPLEMENTED,
    PROTOCOL_HEADER,
)
from ottermq.amqp.errors import AMQPConnectionError, BadProtocolHeader
from ottermq.amqp.frame_encode import (
    HEARTBEAT_FRAME,
    encode_basic_ack,
    encode_basic_nack,
    encode_content,
    encode_deliver,
    encode_get_ok,
    encode_method_frame,
    encode_return,
)
from ottermq.amqp.method import Method
from ottermq.amqp.methods import METHODS

__all__ = [
    "HEARTBEAT_FRAME",
    "BodyFrame",
    "Frame",
    "FrameReader",
    "HeaderFrame",
    "HeartbeatFrame",
    "MethodFrame",
    "ProtocolHeader",
    "encode_basic_ack",
    "encode_basic_nack",
    "encode_content",
    "encode_deliver",
    "encode_get_ok",
    "encode_method_frame",
    "encode_return",
]

_unpack_head: Final = struct.Struct(">BHI").unpack_from
_unpack_content: Final = struct.Struct(">HHQ").unpack_from
_unpack_u32: Final = struct.Struct(">I").unpack_from
_new: Final = object.__new__
# A content header frame's head and its class, weight and body size, in one call.
_unpack_header_head: Final = struct.Struct(">BHIHHQ").unpack_from
# A basic.ack frame (type, channel, size, class and method ids, delivery tag, bits), then its end octet.
_unpack_ack: Final = struct.Struct(">BHIIQB").unpack_from
_ACK_FRAME_SIZE: Final = 21
_ACK_INDEX: Final = 0x003C0050
_methods_get: Final = METHODS.get
_AMQP_MAX_PAYLOAD: Final = 2**32 - 1


@dataclass(slots=True)
class MethodFrame:
    """A method frame, its method already decoded."""

    TYPE: ClassVar[int] = FRAME_METHOD
    channel: int
    method: Method


@dataclass(slots=True)
class HeaderFrame:
    """A content header; ``properties`` are raw (flag words + property list, as on the wire)."""

    TYPE: ClassVar[int] = FRAME_HEADER
    channel: int
    class_id: int
    body_size: int
    properties: bytes


@dataclass(slots=True)
class BodyFrame:
    """A content body frame (one fragment of the message body)."""

    TYPE: ClassVar[int] = FRAME_BODY
    channel: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class HeartbeatFrame:
    """A heartbeat (always on channel 0)."""

    TYPE: ClassVar[int] = FRAME_HEARTBEAT
    channel: int = 0


@dataclass(frozen=True, slots=True)
class ProtocolHeader:
    """The peer's valid ``AMQP 0 0 9 1`` header: returned once, before any frame."""

    TYPE: ClassVar[int] = 0


Frame = MethodFrame | HeaderFrame | BodyFrame | HeartbeatFrame | ProtocolHeader

_HEARTBEAT: Final = HeartbeatFrame()
_PROTOCOL_HEADER: Final = ProtocolHeader()
_KNOWN_TYPES: Final = frozenset((FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT))


def _frame_error(text: str) -> AMQPConnectionError:
    return AMQPConnectionError(FRAME_ERROR, f"FRAME_ERROR - {text}")


class FrameReader:
    """Sans-IO frame parser: ``feed(data)``, then ``next_frame()`` until it returns None.

    ``frame_max`` (0 = up to the AMQP limit) is the negotiated connection.tune value; the owner
    updates it after tune-ok. A frame is refused when its payload exceeds ``frame_max`` (the spec
    says ``frame_max - 8``; RabbitMQ allows those 8 octets of slack and so does this reader).
    With ``expect_protocol_header`` (the server side) the first 8 bytes must be the protocol header.
    """

    __slots__ = ("_buf", "_frame_max", "_header_pending", "_limit", "_more", "_more_len", "_pos")

    def __init__(self, frame_max: int = 0, expect_protocol_header: bool = True) -> None:
        # Frames are parsed from _buf at _pos; chunks received while a frame is incomplete wait in
        # _more and are joined to _buf only once the frame can complete, so a frame trickling in
        # byte by byte costs O(size), and complete frames are always sliced from one bytes object.
        self._buf = b""
        self._pos = 0
        self._more: list[bytes] = []
        self._more_len = 0
        self._header_pending = expect_protocol_header
        self._frame_max = 0
        self._limit = -1
        self.frame_max = frame_max

    @property
    def frame_max(self) -> int:
        """The negotiated frame_max (0: no limit but the AMQP one)."""
        return self._frame_max

    @frame_max.setter
    def frame_max(self, value: int) -> None:
        self._frame_max = value
        # The fast path compares payload sizes with _limit; -1 sends every call to the slow path
        # while the protocol header is still expected.
        self._limit = -1 if self._header_pending else (value or _AMQP_MAX_PAYLOAD)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos + self._more_len

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if type(data) is not bytes:
            data = bytes(data)  # never keep a reference to a caller's mutable buffer
        if not self._more_len and self._pos >= len(self._buf):
            # Nothing pending: parse straight out of the received chunk.
            self._buf = data
            self._pos = 0
        elif data:
            self._more.append(data)
            self._more_len += len(data)

    def frames(self) -> Iterator[Frame]:
        """Every complete frame buffered so far."""
        next_frame = self.next_frame
        while (frame := next_frame()) is not None:
            yield frame

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None when more data is needed."""
        # Fast path: a complete, well-framed frame in _buf. Anything else (too little data, the
        # protocol header, oversize, bad end octet) raises or fails a check and takes _next_slow,
        # which returns None, raises the frame error, or makes the frame complete and comes back.
        buf = self._buf
        pos = self._pos
        try:
            ftype, channel, size = _unpack_head(buf, pos)
            end = pos + 7 + size
            if size > self._limit or buf[end] != 0xCE:
                return self._next_slow()
        except (struct.error, IndexError):
            return self._next_slow()
        self._pos = end + 1
        # Most frequent first: a published message is method + header + body.
        if ftype == 1:
            if size < 4:
                raise _frame_error(f"method frame too short ({size} octets)")
            index = _unpack_u32(buf, pos + 7)[0]
            cls = _methods_get(index)
            if cls is None:
                raise AMQPConnectionError(
                    NOT_IMPLEMENTED,
                    f"NOT_IMPLEMENTED - unknown method class {index >> 16} method {index & 0xFFFF}",
                    index >> 16,
                    index & 0xFFFF,
                )
            # Built field by field: calling the class runs __init__ through type.__call__, which CPython
            # 3.11 does not inline (every method frame, an ack's too, takes this path).
            frame = _new(MethodFrame)
            frame.channel = channel
            frame.method = cls.decode(buf[pos + 11 : end])
            return frame
        if ftype == 3:
            return BodyFrame(channel, buf[pos + 7 : end])
        if ftype == 2:
            if size < 14:
                raise _frame_error(f"content header frame too short ({size} octets)")
            class_id, _weight, body_size = _unpack_content(buf, pos + 7)
            return HeaderFrame(channel, class_id, body_size, buf[pos + 19 : end])
        if ftype == 8:
            if channel:
                raise _frame_error(f"heartbeat frame on channel {channel}")
            if size:
                raise _frame_error(f"heartbeat frame with a payload of {size} octets")
            return _HEARTBEAT
        raise _frame_error(f"unknown frame type {ftype}")

    def take_content(self, channel: int, max_body_size: int) -> tuple[bytes, bytes] | None:
        """(properties, body) of a basic content on `channel` whose header frame and one body frame are
        both complete next in the buffer; None, with nothing taken, in any other case (the frames then
        come one by one from `next_frame`, which checks and reports whatever is wrong with them).

        A published message is three frames: taking the last two together saves two frame objects and
        two turns of the caller's loop per message."""
        buf = self._buf
        pos = self._pos
        try:
            ftype, number, size, class_id, _weight, body_size = _unpack_header_head(buf, pos + 0)
            end = pos + 7 + size
            if (
                ftype != 2
                or number != channel
                or class_id != 60
                or size < 14
                or size > self._limit
                or buf[end] != 0xCE
                or not 0 < body_size <= max_body_size
            ):
                return None
            btype, number, bsize = _unpack_head(buf, end + 1)
            bend = end + 8 + bsize
            if (
                btype != 3
                or number != channel
                or bsize != body_size
                or bsize > self._limit
                or buf[bend] != 0xCE
            ):
                return None
        except (struct.error, IndexError):
            return None
        self._pos = bend + 1
        return buf[pos + 19 : end], buf[end + 8 : bend]

    def take_acks(self, channel: int) -> list[tuple[int, bool]]:
        """(delivery tag, multiple) of each basic.ack on `channel` complete next in the buffer, taken
        together, up to the first frame that is anything else (which then comes from `next_frame`, which
        checks and reports whatever is wrong with it); [] when the next frame is not one.

        A consumer's acks arrive back to back, one 21-octet frame each: taking a run of them saves a frame
        object, a method object and a turn of each caller's loop per ack."""
        buf = self._buf
        pos = self._pos
        last = len(buf) - _ACK_FRAME_SIZE
        acks: list[tuple[int, bool]] = []
        while pos <= last:
            ftype, number, size, index, tag, bits = _unpack_ack(buf, pos)
            if (
                ftype != 1
                or number != channel
                or size != 13
                or index != _ACK_INDEX
                or buf[pos + _ACK_FRAME_SIZE - 1] != 0xCE
            ):
                break
            acks.append((tag, bits & 1 != 0))  # the other bits are reserved: BasicAck.decode ignores them
            pos += _ACK_FRAME_SIZE
        self._pos = pos
        return acks

    def _next_slow(self) -> Frame | None:
        if self._header_pending:
            return self._protocol_header()
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 7:
            if not self._fill(7):
                return None
            buf = self._buf
            pos = 0
        ftype, _channel, size = _unpack_head(buf, pos)
        frame_max = self._frame_max
        # Like RabbitMQ, tolerate payloads up to frame_max itself: many clients forget the 8 octets
        # of frame overhead when they split bodies.
        if frame_max and size > frame_max:
            raise _frame_error(f"type {ftype}, all octets = <<>>: {{frame_too_large,{size},{frame_max - 8}}}")
        end = pos + 7 + size
        if end >= len(buf):
            if ftype not in _KNOWN_TYPES:  # refuse garbage without waiting for its "payload"
                raise _frame_error(f"unknown frame type {ftype}")
            if not self._fill(size + 8):
                return None
            buf = self._buf
            end = 7 + size
        if buf[end] != 0xCE:
            raise _frame_error(f"invalid frame end marker {buf[end]:#04x}")
        return self.next_frame()  # complete and well framed: the fast path takes it

    def _fill(self, need: int) -> bool:
        """Join the waiting chunks if that gives ``need`` bytes from _pos; False if still short."""
        if len(self._buf) - self._pos + self._more_len < need:
            return False
        self._buf = b"".join((self._buf[self._pos :], *self._more))
        self._pos = 0
        self._more.clear()
        self._more_len = 0
        return True

    def _protocol_header(self) -> ProtocolHeader | None:
        self._fill(0)
        have = self._buf[self._pos : self._pos + 8]
        if not PROTOCOL_HEADER.startswith(have):
            raise BadProtocolHeader(have)
        if len(have) < 8:
            return None
        self._pos += 8
        self._header_pending = False
        self.frame_max = self._frame_max  # arms the fast path
        return _PROTOCOL_HEADER
