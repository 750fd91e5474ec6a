"""Content-header properties of class basic, kept raw until someone needs them.

Strategy: a content header carries ``property flags`` (u16 words, bit 0 = another word follows)
then the present properties in flag order. The broker stores and forwards those bytes untouched
(``raw``); ``decode_properties`` builds a ``BasicProperties`` only where routing needs the values
(headers exchange, dead-lettering), and the ``peek_*`` helpers walk just far enough through the
flags to read delivery-mode, priority or expiration, since those run once per message.
"""

from dataclasses import dataclass
from typing import Any, Final

from ottermq.amqp.errors import AMQPError
from ottermq.amqp.table import decode_table, encode_table
from ottermq.amqp.wire import DECODE_ERRORS, U8, U16, U32, U64, Buffer, pack_shortstr, syntax_error

FLAG_CONTENT_TYPE: Final = 1 << 15
FLAG_CONTENT_ENCODING: Final = 1 << 14
FLAG_HEADERS: Final = 1 << 13
FLAG_DELIVERY_MODE: Final = 1 << 12
FLAG_PRIORITY: Final = 1 << 11
FLAG_CORRELATION_ID: Final = 1 << 10
FLAG_REPLY_TO: Final = 1 << 9
FLAG_EXPIRATION: Final = 1 << 8
FLAG_MESSAGE_ID: Final = 1 << 7
FLAG_TIMESTAMP: Final = 1 << 6
FLAG_TYPE: Final = 1 << 5
FLAG_USER_ID: Final = 1 << 4
FLAG_APP_ID: Final = 1 << 3
FLAG_CLUSTER_ID: Final = 1 << 2

# Raw properties of a message with no property set.
EMPTY_PROPERTIES: Final = b"\x00\x00"

_SHORTSTR: Final = 0
_OCTET: Final = 1
_TABLE: Final = 2
_TIMESTAMP: Final = 3

# (attribute, flag, kind) in wire order.
_FIELDS: Final = (
    ("content_type", FLAG_CONTENT_TYPE, _SHORTSTR),
    ("content_encoding", FLAG_CONTENT_ENCODING, _SHORTSTR),
    ("headers", FLAG_HEADERS, _TABLE),
    ("delivery_mode", FLAG_DELIVERY_MODE, _OCTET),
    ("priority", FLAG_PRIORITY, _OCTET),
    ("correlation_id", FLAG_CORRELATION_ID, _SHORTSTR),
    ("reply_to", FLAG_REPLY_TO, _SHORTSTR),
    ("expiration", FLAG_EXPIRATION, _SHORTSTR),
    ("message_id", FLAG_MESSAGE_ID, _SHORTSTR),
    ("timestamp", FLAG_TIMESTAMP, _TIMESTAMP),
    ("type", FLAG_TYPE, _SHORTSTR),
    ("user_id", FLAG_USER_ID, _SHORTSTR),
    ("app_id", FLAG_APP_ID, _SHORTSTR),
    ("cluster_id", FLAG_CLUSTER_ID, _SHORTSTR),
)

# Flags of the properties that precede delivery-mode / priority / expiration on the wire.
_BEFORE_DELIVERY_MODE: Final = FLAG_CONTENT_TYPE | FLAG_CONTENT_ENCODING | FLAG_HEADERS

_u16 = U16.unpack_from
_u32 = U32.unpack_from


@dataclass(frozen=True, slots=True)
class BasicProperties:
    """The 14 properties of class basic, by pika's names; ``None`` means absent.

    ``timestamp`` is an int (seconds since the epoch), ``headers`` a field table.
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None


def decode_properties(raw: Buffer) -> BasicProperties:
    """Decode raw properties (flag words + property list); 502 on malformed input."""
    try:
        flags = _u16(raw, 0)[0]
        off = 2
        word = flags
        while word & 1:  # further flag words: no basic property lives there, skip them
            word = _u16(raw, off)[0]
            off += 2
        if not flags & 0xFFFC:
            return _EMPTY
        values: dict[str, Any] = {}
        for name, flag, kind in _FIELDS:
            if not flags & flag:
                continue
            if kind == _SHORTSTR:
                end = off + 1 + raw[off]
                if end > len(raw):
                    raise syntax_error("truncated property")
                values[name] = str(raw[off + 1 : end], "utf-8")
                off = end
            elif kind == _OCTET:
                values[name] = raw[off]
                off += 1
            elif kind == _TABLE:
                values[name], off = decode_table(raw, off)
            else:
                values[name] = U64.unpack_from(raw, off)[0]
                off += 8
        return BasicProperties(**values)
    except AMQPError:
        raise
    except DECODE_ERRORS as exc:
        raise syntax_error(f"malformed content properties ({type(exc).__name__})") from None


_EMPTY: Final = BasicProperties()


def encode_properties(props: BasicProperties) -> bytes:
    """Encode properties as flag word + property list (the ``raw`` form)."""
    flags = 0
    parts: list[bytes] = [b""]
    for name, flag, kind in _FIELDS:
        value = getattr(props, name)
        if value is None:
            continue
        flags |= flag
        if kind == _SHORTSTR:
            parts.append(pack_shortstr(value))
        elif kind == _OCTET:
            parts.append(U8.pack(int(value)))
        elif kind == _TABLE:
            parts.append(encode_table(value))
        else:
            parts.append(U64.pack(int(value)))
    parts[0] = U16.pack(flags)
    return b"".join(parts)


def _skip_to(raw: Buffer, flags: int, stop: int) -> int:
    """Offset of the property with flag ``stop`` (present), skipping the ones before it."""
    off = 2
    word = flags
    while word & 1:  # extension flag words carry no basic property
        word = _u16(raw, off)[0]
        off += 2
    if flags & FLAG_CONTENT_TYPE:
        off += 1 + raw[off]
    if flags & FLAG_CONTENT_ENCODING:
        off += 1 + raw[off]
    if flags & FLAG_HEADERS:
        off += 4 + _u32(raw, off)[0]
    if stop == FLAG_DELIVERY_MODE:
        return off
    if flags & FLAG_DELIVERY_MODE:
        off += 1
    if stop == FLAG_PRIORITY:
        return off
    if flags & FLAG_PRIORITY:
        off += 1
    if flags & FLAG_CORRELATION_ID:
        off += 1 + raw[off]
    if flags & FLAG_REPLY_TO:
        off += 1 + raw[off]
    return off


def peek_delivery_mode(raw: Buffer) -> int:
    """Delivery mode (1 transient, 2 persistent) without decoding the rest; 0 if absent."""
    try:
        flags = (raw[0] << 8) | raw[1]
        if not flags & FLAG_DELIVERY_MODE:
            return 0
        if not flags & (_BEFORE_DELIVERY_MODE | 1):
            return raw[2]
        return raw[_skip_to(raw, flags, FLAG_DELIVERY_MODE)]
    except DECODE_ERRORS as exc:
        raise syntax_error(f"malformed content properties ({type(exc).__name__})") from None


def peek_priority(raw: Buffer) -> int | None:
    """Message priority without decoding the rest; None if absent."""
    try:
        flags = (raw[0] << 8) | raw[1]
        if not flags & FLAG_PRIORITY:
            return None
        return raw[_skip_to(raw, flags, FLAG_PRIORITY)]
    except DECODE_ERRORS as exc:
        raise syntax_error(f"malformed content properties ({type(exc).__name__})") from None


def peek_expiration(raw: Buffer) -> str | None:
    """Per-message TTL property (a string of milliseconds, unparsed); None if absent."""
    try:
        flags = (raw[0] << 8) | raw[1]
        if not flags & FLAG_EXPIRATION:
            return None
        off = _skip_to(raw, flags, FLAG_EXPIRATION)
        end = off + 1 + raw[off]
        if end > len(raw):
            raise syntax_error("truncated expiration property")
        return str(raw[off + 1 : end], "utf-8")
    except AMQPError:
        raise
    except DECODE_ERRORS as exc:
        raise syntax_error(f"malformed content properties ({type(exc).__name__})") from None
