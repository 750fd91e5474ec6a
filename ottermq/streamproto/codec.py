"""The frames of RabbitMQ's stream protocol: splitting a byte stream into frames, reading their fields,
and building the frames a server sends. Sans-IO: bytes in, values and bytes out.

Strategy: a frame is `size:u32` then `key:u16 version:u16` and the command's fields, big-endian; a
response is the request's key with the top bit set. `FrameSplitter` cuts received bytes into frames
(refusing one larger than the negotiated maximum before buffering it); a `Reader` walks one frame's
fields and raises `FrameError` on anything short or malformed, so the session answers bad input with the
protocol's codes instead of failing. The encoders build whole frames as `bytes` (deliveries as parts,
so message bytes are written as stored).
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Iterable
from typing import Final

# -- command keys -------------------------------------------------------------------------------------------

DECLARE_PUBLISHER: Final = 0x01
PUBLISH: Final = 0x02
PUBLISH_CONFIRM: Final = 0x03
PUBLISH_ERROR: Final = 0x04
QUERY_PUBLISHER_SEQUENCE: Final = 0x05
DELETE_PUBLISHER: Final = 0x06
SUBSCRIBE: Final = 0x07
DELIVER: Final = 0x08
CREDIT: Final = 0x09
STORE_OFFSET: Final = 0x0A
QUERY_OFFSET: Final = 0x0B
UNSUBSCRIBE: Final = 0x0C
CREATE: Final = 0x0D
DELETE: Final = 0x0E
METADATA: Final = 0x0F
METADATA_UPDATE: Final = 0x10
PEER_PROPERTIES: Final = 0x11
SASL_HANDSHAKE: Final = 0x12
SASL_AUTHENTICATE: Final = 0x13
TUNE: Final = 0x14
OPEN: Final = 0x15
CLOSE: Final = 0x16
HEARTBEAT: Final = 0x17
EXCHANGE_COMMAND_VERSIONS: Final = 0x1B
RESPONSE: Final = 0x8000

# -- response codes -----------------------------------------------------------------------------------------

OK: Final = 0x01
STREAM_DOES_NOT_EXIST: Final = 0x02
SUBSCRIPTION_ID_ALREADY_EXISTS: Final = 0x03
SUBSCRIPTION_ID_DOES_NOT_EXIST: Final = 0x04
STREAM_ALREADY_EXISTS: Final = 0x05
STREAM_NOT_AVAILABLE: Final = 0x06
SASL_MECHANISM_NOT_SUPPORTED: Final = 0x07
AUTHENTICATION_FAILURE: Final = 0x08
SASL_ERROR: Final = 0x09
SASL_CHALLENGE: Final = 0x0A
SASL_AUTHENTICATION_FAILURE_LOOPBACK: Final = 0x0B
VIRTUAL_HOST_ACCESS_FAILURE: Final = 0x0C
UNKNOWN_FRAME: Final = 0x0D
FRAME_TOO_LARGE: Final = 0x0E
INTERNAL_ERROR: Final = 0x0F
ACCESS_REFUSED: Final = 0x10
PRECONDITION_FAILED: Final = 0x11
PUBLISHER_DOES_NOT_EXIST: Final = 0x12
NO_OFFSET: Final = 0x13

# -- offset specifications (subscribe) ----------------------------------------------------------------------

OFFSET_FIRST: Final = 1
OFFSET_LAST: Final = 2
OFFSET_NEXT: Final = 3
OFFSET_OFFSET: Final = 4
OFFSET_TIMESTAMP: Final = 5

_U8: Final = struct.Struct(">B")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_I32: Final = struct.Struct(">i")
_U64: Final = struct.Struct(">Q")
_MESSAGE_HEAD: Final = struct.Struct(">Qi")  # a published message's publishing id and size
_I64: Final = struct.Struct(">q")
_HEAD: Final = struct.Struct(">IHH")  # size, key, version
_RESPONSE_HEAD: Final = struct.Struct(">IHHIH")  # size, key, version, correlation id, code

# Frames smaller than this are always accepted, whatever the negotiated maximum (the handshake's).
MIN_FRAME_MAX: Final = 8192


class FrameError(Exception):
    """A frame that cannot be read: the connection answers with `code` (when it can) and closes."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class FrameSplitter:
    """Cuts received bytes into frames (key, version and the fields after them, as a memoryview)."""

    __slots__ = ("_buffer", "frame_max")

    def __init__(self, frame_max: int = 0) -> None:
        self._buffer = bytearray()
        self.frame_max = frame_max  # 0: no limit

    def feed(self, data: bytes) -> list[memoryview]:
        """The whole frames now received (FrameError for a frame larger than `frame_max`)."""
        buffer = self._buffer
        buffer += data
        frames: list[memoryview] = []
        pos = 0
        end = len(buffer)
        limit = self.frame_max
        while end - pos >= 4:
            (size,) = _U32.unpack_from(buffer, pos)
            if size < 4 or (limit and size > max(limit, MIN_FRAME_MAX)):
                raise FrameError(FRAME_TOO_LARGE if size >= 4 else UNKNOWN_FRAME, f"frame of {size} bytes")
            if end - pos - 4 < size:
                break
            frames.append(memoryview(bytes(buffer[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        if pos:
            del buffer[:pos]
        return frames


class Reader:
    """Reads the fields of one frame in order; `FrameError(UNKNOWN_FRAME)` when they do not fit."""

    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _take(self, size: int) -> int:
        pos = self.pos
        if pos + size > len(self.data):
            raise FrameError(UNKNOWN_FRAME, "frame shorter than its fields")
        self.pos = pos + size
        return pos

    def u8(self) -> int:
        value: int = self.data[self._take(1)]
        return value

    def u16(self) -> int:
        value: int = _U16.unpack_from(self.data, self._take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack_from(self.data, self._take(4))[0]
        return value

    def i32(self) -> int:
        value: int = _I32.unpack_from(self.data, self._take(4))[0]
        return value

    def u64(self) -> int:
        value: int = _U64.unpack_from(self.data, self._take(8))[0]
        return value

    def i64(self) -> int:
        value: int = _I64.unpack_from(self.data, self._take(8))[0]
        return value

    def string(self) -> str:
        """A string: int16 length (-1: null, read as "") and UTF-8."""
        size = _I16_unpack(self.data, self._take(2))
        if size <= 0:
            return ""
        start = self._take(size)
        try:
            return str(self.data[start : start + size], "utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(UNKNOWN_FRAME, "a string is not UTF-8") from exc

    def bytes(self) -> memoryview:
        """Bytes: int32 length (-1: null, read as empty) and the bytes."""
        size = self.i32()
        if size < -1:
            # Also what a sub-entry batch looks like where a plain message is expected (top bit set).
            raise FrameError(UNKNOWN_FRAME, f"bytes of length {size}")
        if size <= 0:
            return self.data[0:0]
        start = self._take(size)
        return self.data[start : start + size]

    def message(self) -> tuple[int, builtins.bytes]:
        """A publishing id (u64) and a message (bytes, copied), as `u64()` then `bytes()` read them."""
        pos = self._take(12)
        publishing_id, size = _MESSAGE_HEAD.unpack_from(self.data, pos)
        if size < -1:
            # The top bit of a sub-entry's type byte, where a plain message's size starts: said plainly,
            # since the client shows this reason (RabbitMQ has no code for "not implemented").
            raise FrameError(UNKNOWN_FRAME, "sub-entry batching is not supported")
        if size <= 0:
            return publishing_id, b""
        start = self._take(size)
        return publishing_id, self.data[start : start + size].tobytes()

    def count(self, least: int) -> int:
        """An array's int32 length, refused when the frame cannot hold that many of `least` bytes."""
        size = self.i32()
        if size < 0 or size * least > len(self.data) - self.pos:
            raise FrameError(UNKNOWN_FRAME, f"an array of {size} items does not fit its frame")
        return size

    def properties(self) -> dict[str, str]:
        """An array of key/value strings."""
        return {self.string(): self.string() for _ in range(self.count(4))}

    def strings(self) -> list[str]:
        return [self.string() for _ in range(self.count(2))]

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _I16_unpack(data: memoryview, pos: int) -> int:
    value: int = struct.unpack_from(">h", data, pos)[0]
    return value


# -- building frames -----------------------------------------------------------------------------------------


def string(value: str) -> bytes:
    raw = value.encode()
    return _U16.pack(len(raw)) + raw


def properties(values: dict[str, str]) -> bytes:
    return _I32.pack(len(values)) + b"".join(string(k) + string(v) for k, v in values.items())


def frame(key: int, body: bytes, version: int = 1) -> bytes:
    """A whole frame: size, key, version, then `body`."""
    return _HEAD.pack(len(body) + 4, key, version) + body


def response(key: int, correlation_id: int, code: int, extra: bytes = b"") -> bytes:
    """The response to request `key`: its correlation id, a response code and what follows."""
    return _RESPONSE_HEAD.pack(len(extra) + 10, key | RESPONSE, 1, correlation_id, code) + extra


def tune(frame_max: int, heartbeat: int) -> bytes:
    return frame(TUNE, _U32.pack(frame_max) + _U32.pack(heartbeat))


def heartbeat() -> bytes:
    return frame(HEARTBEAT, b"")


def close(correlation_id: int, code: int, reason: str) -> bytes:
    """The server's close request."""
    return frame(CLOSE, _U32.pack(correlation_id) + _U16.pack(code) + string(reason))


def publish_confirm(publisher_id: int, publishing_ids: list[int]) -> bytes:
    ids = struct.pack(f">{len(publishing_ids)}Q", *publishing_ids)
    return frame(PUBLISH_CONFIRM, _U8.pack(publisher_id) + _I32.pack(len(publishing_ids)) + ids)


def publish_error(publisher_id: int, errors: list[tuple[int, int]]) -> bytes:
    """PublishError: (publishing id, code) pairs."""
    body = b"".join(_U64.pack(pid) + _U16.pack(code) for pid, code in errors)
    return frame(PUBLISH_ERROR, _U8.pack(publisher_id) + _I32.pack(len(errors)) + body)


def metadata_update(code: int, stream: str) -> bytes:
    return frame(METADATA_UPDATE, _U16.pack(code) + string(stream))


def credit_response(code: int, subscription_id: int) -> bytes:
    """Credit's answer, sent only when it failed (and without a correlation id)."""
    return frame(CREDIT | RESPONSE, _U16.pack(code) + _U8.pack(subscription_id))


def metadata_response(
    correlation_id: int, brokers: Iterable[tuple[int, str, int]], streams: Iterable[tuple[str, int, int]]
) -> bytes:
    """Brokers as (reference, host, port); streams as (name, code, leader reference) (no replicas)."""
    broker_list = list(brokers)
    stream_list = list(streams)
    parts = [_U32.pack(correlation_id), _I32.pack(len(broker_list))]
    parts += [_U16.pack(ref) + string(host) + _U32.pack(port) for ref, host, port in broker_list]
    parts.append(_I32.pack(len(stream_list)))
    parts += [
        string(name) + _U16.pack(code) + _U16.pack(leader) + _I32.pack(0)
        for name, code, leader in stream_list
    ]
    return frame(METADATA | RESPONSE, b"".join(parts))


def u64(value: int) -> bytes:
    return _U64.pack(value)


def u16(value: int) -> bytes:
    return _U16.pack(value)


def deliver(subscription_id: int, chunk: list[bytes]) -> list[bytes]:
    """A Deliver frame (version 1) around an osiris chunk given as parts (written without joining)."""
    size = sum(len(part) for part in chunk) + 5
    return [_HEAD.pack(size, DELIVER, 1) + _U8.pack(subscription_id), *chunk]
