"""AMQP 1.0 messages, as the stream protocol carries them, to and from AMQP 0.9.1 properties and body.

Strategy: a stream-protocol client publishes opaque AMQP 1.0 messages (sections: header, annotations,
properties, application-properties, data or value, footer). A stream keeps them as they came, marked by
raw 0.9.1 properties of `AMQP10` (a flags word with only the continuation bit, which no 0.9.1 publish
carries), so stream-protocol subscribers get the same bytes back. Readers of the other protocol get a
conversion made at read time: `from_amqp10` gives 0.9.1 properties and the body (the data sections), and
`to_amqp10` turns a 0.9.1 message into an AMQP 1.0 one. The field mapping is the common subset:

    message-id, correlation-id, reply-to, content-type, content-encoding, user-id <-> the same 0.9.1
    subject <-> type;  creation-time (ms) <-> timestamp (s);  header durable/priority <-> delivery-mode 2
    / priority;  application-properties (simple values) <-> headers.

Everything else (annotations, footer, absolute-expiry-time, group fields; 0.9.1 expiration, app-id,
cluster-id, nested tables) is dropped by the conversion. Malformed AMQP 1.0 bytes raise `ValueError`.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any, Final

from ottermq.amqp.properties import BasicProperties, decode_properties, encode_properties

# The raw 0.9.1 properties of a stream record that holds an AMQP 1.0 message as its body.
AMQP10: Final = b"\x00\x01"

HEADER: Final = 0x70
DELIVERY_ANNOTATIONS: Final = 0x71
MESSAGE_ANNOTATIONS: Final = 0x72
PROPERTIES: Final = 0x73
APPLICATION_PROPERTIES: Final = 0x74
DATA: Final = 0x75
AMQP_SEQUENCE: Final = 0x76
AMQP_VALUE: Final = 0x77
FOOTER: Final = 0x78
_SECTION_SYMBOLS: Final = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}

_FIXED: Final = {
    0x50: struct.Struct(">B"),
    0x51: struct.Struct(">b"),
    0x60: struct.Struct(">H"),
    0x61: struct.Struct(">h"),
    0x70: struct.Struct(">I"),
    0x52: struct.Struct(">B"),
    0x80: struct.Struct(">Q"),
    0x53: struct.Struct(">B"),
    0x71: struct.Struct(">i"),
    0x54: struct.Struct(">b"),
    0x81: struct.Struct(">q"),
    0x55: struct.Struct(">b"),
    0x72: struct.Struct(">f"),
    0x82: struct.Struct(">d"),
    0x83: struct.Struct(">q"),
}
_OPAQUE: Final = {0x74: 4, 0x84: 8, 0x94: 16, 0x73: 4}  # decimals and char: kept as their bytes
_CONSTANTS: Final = {0x40: None, 0x41: True, 0x42: False, 0x43: 0, 0x44: 0}


class Symbol(str):
    """An AMQP 1.0 symbol (encoded as one, decoded as a plain str subclass)."""


class Timestamp(int):
    """An AMQP 1.0 timestamp: ms since the epoch."""


class Described:
    """A described value (descriptor, value)."""

    __slots__ = ("descriptor", "value")

    def __init__(self, descriptor: Any, value: Any) -> None:
        self.descriptor = descriptor
        self.value = value


# -- decoding ----------------------------------------------------------------------------------------------


def _value(data: memoryview, pos: int) -> tuple[Any, int]:
    code = data[pos]
    pos += 1
    if code == 0x00:
        descriptor, pos = _value(data, pos)
        value, pos = _value(data, pos)
        return Described(descriptor, value), pos
    return _of(code, data, pos)


def _of(code: int, data: memoryview, pos: int) -> tuple[Any, int]:
    if code in _CONSTANTS:
        return _CONSTANTS[code], pos
    fixed = _FIXED.get(code)
    if fixed is not None:
        (value,) = fixed.unpack_from(data, pos)
        return (Timestamp(value) if code == 0x83 else value), pos + fixed.size
    if code == 0x56:
        return data[pos] != 0, pos + 1
    if code in _OPAQUE:
        size = _OPAQUE[code]
        return bytes(data[pos : pos + size]), pos + size
    if code == 0x98:
        return uuid.UUID(bytes=bytes(data[pos : pos + 16])), pos + 16
    if code in (0xA0, 0xA1, 0xA3, 0xB0, 0xB1, 0xB3):
        if code & 0xF0 == 0xA0:
            size, pos = data[pos], pos + 1
        else:
            (size,), pos = struct.unpack_from(">I", data, pos), pos + 4
        if pos + size > len(data):
            raise ValueError("AMQP 1.0 value past the end of the message")
        raw = data[pos : pos + size]
        pos += size
        if code in (0xA0, 0xB0):
            return bytes(raw), pos
        text = str(raw, "utf-8")
        return (Symbol(text) if code in (0xA3, 0xB3) else text), pos
    if code == 0x45:
        return [], pos
    if code in (0xC0, 0xC1, 0xE0, 0xD0, 0xD1, 0xF0):
        if code in (0xC0, 0xC1, 0xE0):
            size, count, pos = data[pos], data[pos + 1], pos + 2
            end = pos + size - 1
        else:
            size, count = struct.unpack_from(">II", data, pos)
            pos += 8
            end = pos + size - 4
        if end > len(data):
            raise ValueError("AMQP 1.0 compound past the end of the message")
        items: list[Any] = []
        if code in (0xE0, 0xF0):
            element = data[pos]
            pos += 1
            descriptor = None
            if element == 0x00:
                descriptor, pos = _value(data, pos)
                element = data[pos]
                pos += 1
            for _ in range(count):
                item, pos = _of(element, data, pos)
                items.append(item if descriptor is None else Described(descriptor, item))
            return items, end
        for _ in range(count):
            item, pos = _value(data, pos)
            items.append(item)
        if code in (0xC1, 0xD1):
            return dict(zip(items[::2], items[1::2], strict=True)), end
        return items, end
    raise ValueError(f"unknown AMQP 1.0 type code 0x{code:02x}")


def sections(message: bytes | memoryview) -> list[tuple[int, Any, memoryview]]:
    """The sections of an AMQP 1.0 message: (section code, value, the section's own bytes)."""
    data = memoryview(message)
    out: list[tuple[int, Any, memoryview]] = []
    pos = 0
    try:
        while pos < len(data):
            start = pos
            value, pos = _value(data, pos)
            if not isinstance(value, Described):
                raise ValueError("an AMQP 1.0 section must be a described value")
            code = value.descriptor
            if isinstance(code, str):
                code = _SECTION_SYMBOLS.get(code, -1)
            out.append((code, value.value, data[start:pos]))
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed AMQP 1.0 message: {exc}") from exc
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _header_value(value: Any) -> Any:
    if isinstance(value, (str, bytes, bool, int, float)) or value is None:
        return value
    return str(value)


def from_amqp10(message: bytes | memoryview) -> tuple[bytes, bytes]:
    """(raw 0.9.1 properties, body) of an AMQP 1.0 message; ValueError when malformed."""
    fields: dict[str, Any] = {}
    body: list[bytes] = []
    for code, value, raw in sections(message):
        if code == HEADER and isinstance(value, list):
            if len(value) > 0 and value[0]:
                fields["delivery_mode"] = 2
            if len(value) > 1 and isinstance(value[1], int) and not isinstance(value[1], bool):
                fields["priority"] = value[1] & 0xFF
        elif code == PROPERTIES and isinstance(value, list):
            value = value + [None] * (13 - len(value))
            names = ("message_id", "user_id", None, "type", "reply_to", "correlation_id")
            for name, item in zip(names, value, strict=False):
                if name is not None and item is not None:
                    fields[name] = _text(item)
            if value[6] is not None:
                fields["content_type"] = _text(value[6])
            if value[7] is not None:
                fields["content_encoding"] = _text(value[7])
            if isinstance(value[9], int):
                fields["timestamp"] = value[9] // 1000
        elif code == APPLICATION_PROPERTIES and isinstance(value, dict):
            fields["headers"] = {str(k): _header_value(v) for k, v in value.items()}
        elif code == DATA and isinstance(value, bytes):
            body.append(value)
        elif code == AMQP_VALUE and isinstance(value, (bytes, str)):
            body.append(value.encode() if isinstance(value, str) else value)
        elif code in (AMQP_VALUE, AMQP_SEQUENCE):
            body.append(bytes(raw))
    return encode_properties(BasicProperties(**fields)), b"".join(body)


# -- encoding ----------------------------------------------------------------------------------------------


def _encode(value: Any) -> bytes:
    if value is None:
        return b"\x40"
    if isinstance(value, bool):
        return b"\x41" if value else b"\x42"
    if isinstance(value, Timestamp):
        return b"\x83" + struct.pack(">q", value)
    if isinstance(value, datetime.datetime):
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)
        return b"\x83" + struct.pack(">q", int(stamp.timestamp() * 1000))
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return b"\x81" + struct.pack(">q", value)
        return b"\x80" + struct.pack(">Q", value & ((1 << 64) - 1))
    if isinstance(value, float):
        return b"\x82" + struct.pack(">d", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return (
            b"\xa0" + bytes((len(raw),)) if len(raw) < 256 else b"\xb0" + struct.pack(">I", len(raw))
        ) + raw
    if isinstance(value, str):
        raw = value.encode()
        small, large = (b"\xa3", b"\xb3") if isinstance(value, Symbol) else (b"\xa1", b"\xb1")
        return (small + bytes((len(raw),)) if len(raw) < 256 else large + struct.pack(">I", len(raw))) + raw
    if isinstance(value, list):
        items = b"".join(_encode(item) for item in value)
        return b"\xd0" + struct.pack(">II", len(items) + 4, len(value)) + items
    if isinstance(value, dict):
        items = b"".join(_encode(k) + _encode(v) for k, v in value.items())
        return b"\xd1" + struct.pack(">II", len(items) + 4, 2 * len(value)) + items
    return _encode(str(value))


def _section(code: int, value: Any) -> bytes:
    return b"\x00\x53" + bytes((code,)) + _encode(value)


def to_amqp10(properties: bytes, body: bytes) -> bytes:
    """An AMQP 1.0 message made of raw 0.9.1 `properties` and `body` (see the module's mapping)."""
    props = decode_properties(properties)
    out: list[bytes] = []
    if props.delivery_mode == 2 or props.priority is not None:
        out.append(_section(HEADER, [props.delivery_mode == 2, props.priority]))
    listed: list[Any] = [
        props.message_id,
        props.user_id.encode() if props.user_id is not None else None,
        None,
        props.type,
        props.reply_to,
        props.correlation_id,
        Symbol(props.content_type) if props.content_type is not None else None,
        Symbol(props.content_encoding) if props.content_encoding is not None else None,
        None,
        Timestamp(props.timestamp * 1000) if props.timestamp is not None else None,
    ]
    while listed and listed[-1] is None:
        listed.pop()
    if listed:
        out.append(_section(PROPERTIES, listed))
    if props.headers:
        simple = {
            k: v
            for k, v in props.headers.items()
            if v is None or isinstance(v, (str, bytes, bool, int, float, datetime.datetime))
        }
        if simple:
            out.append(_section(APPLICATION_PROPERTIES, simple))
    out.append(_section(DATA, body))
    return b"".join(out)
