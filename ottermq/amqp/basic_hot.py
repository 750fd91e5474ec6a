"""The per-message basic methods, hand-written for speed.

Strategy: these run once per message (publish, deliver, get-ok, return) or per settlement (ack,
nack, reject), so they avoid the generic helpers: one precompiled struct per fixed run, direct
indexing for short-string lengths, ``bytes.decode`` on slices. Hostile input can only produce
``IndexError``/``struct.error``/``UnicodeDecodeError`` here, which become a 502 connection error.
Slicing never reads out of range silently: every string is followed by another field that is
indexed, and the final string's end is checked explicitly.

They are slotted but not frozen (a frozen dataclass' ``__init__`` costs ~4x more); treat them as
immutable all the same.
"""

import struct
from dataclasses import dataclass
from typing import Final, Self

from ottermq.amqp.method import Method, malformed
from ottermq.amqp.wire import DECODE_ERRORS, Buffer, pack_shortstr, syntax_error

_U16: Final = struct.Struct(">H")
_U64_U8: Final = struct.Struct(">QB")
_U32: Final = struct.Struct(">I")


@dataclass(slots=True)
class BasicPublish(Method):
    """basic.publish (60, 40): content follows."""

    CLASS_ID = 60
    METHOD_ID = 40
    INDEX = 0x003C0028
    NAME = "basic.publish"
    SYNCHRONOUS = False
    HAS_CONTENT = True

    ticket: int = 0
    exchange: str = ""
    routing_key: str = ""
    mandatory: bool = False
    immediate: bool = False

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        bits = (1 if self.mandatory else 0) | (2 if self.immediate else 0)
        return (
            _U16.pack(self.ticket)
            + pack_shortstr(self.exchange)
            + pack_shortstr(self.routing_key)
            + bytes((bits,))
        )

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id); 502 when malformed."""
        # A memoryview has no .decode(): the AttributeError branch retries on a bytes copy.
        b: bytes = buf  # type: ignore[assignment]
        try:
            end = 3 + b[2]
            exchange = b[3:end].decode() if end > 3 else ""
            start = end + 1
            end = start + b[end]
            routing_key = b[start:end].decode() if end > start else ""
            bits = b[end]
            return cls((b[0] << 8) | b[1], exchange, routing_key, (bits & 1) != 0, (bits & 2) != 0)
        except AttributeError:
            return cls.decode(bytes(buf))
        except DECODE_ERRORS as exc:
            raise malformed(cls, exc) from None


@dataclass(slots=True)
class BasicReturn(Method):
    """basic.return (60, 50): content follows."""

    CLASS_ID = 60
    METHOD_ID = 50
    INDEX = 0x003C0032
    NAME = "basic.return"
    SYNCHRONOUS = False
    HAS_CONTENT = True

    reply_code: int = 0
    reply_text: str = ""
    exchange: str = ""
    routing_key: str = ""

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        return (
            _U16.pack(self.reply_code)
            + pack_shortstr(self.reply_text)
            + pack_shortstr(self.exchange)
            + pack_shortstr(self.routing_key)
        )

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id); 502 when malformed."""
        # A memoryview has no .decode(): the AttributeError branch retries on a bytes copy.
        b: bytes = buf  # type: ignore[assignment]
        try:
            end = 3 + b[2]
            reply_text = b[3:end].decode()
            start = end + 1
            end = start + b[end]
            exchange = b[start:end].decode()
            start = end + 1
            end = start + b[end]
            if end > len(b):
                raise syntax_error("truncated routing key", cls.CLASS_ID, cls.METHOD_ID)
            return cls((b[0] << 8) | b[1], reply_text, exchange, b[start:end].decode())
        except AttributeError:
            return cls.decode(bytes(buf))
        except DECODE_ERRORS as exc:
            raise malformed(cls, exc) from None


@dataclass(slots=True)
class BasicDeliver(Method):
    """basic.deliver (60, 60): content follows."""

    CLASS_ID = 60
    METHOD_ID = 60
    INDEX = 0x003C003C
    NAME = "basic.deliver"
    SYNCHRONOUS = False
    HAS_CONTENT = True

    consumer_tag: str = ""
    delivery_tag: int = 0
    redelivered: bool = False
    exchange: str = ""
    routing_key: str = ""

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        return (
            pack_shortstr(self.consumer_tag)
            + _U64_U8.pack(self.delivery_tag, 1 if self.redelivered else 0)
            + pack_shortstr(self.exchange)
            + pack_shortstr(self.routing_key)
        )

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id); 502 when malformed."""
        # A memoryview has no .decode(): the AttributeError branch retries on a bytes copy.
        b: bytes = buf  # type: ignore[assignment]
        try:
            end = 1 + b[0]
            consumer_tag = b[1:end].decode()
            delivery_tag, redelivered = _U64_U8.unpack_from(b, end)
            start = end + 10
            end = start + b[end + 9]
            exchange = b[start:end].decode()
            start = end + 1
            end = start + b[end]
            if end > len(b):
                raise syntax_error("truncated routing key", cls.CLASS_ID, cls.METHOD_ID)
            return cls(consumer_tag, delivery_tag, (redelivered & 1) != 0, exchange, b[start:end].decode())
        except AttributeError:
            return cls.decode(bytes(buf))
        except DECODE_ERRORS as exc:
            raise malformed(cls, exc) from None


@dataclass(slots=True)
class BasicGetOk(Method):
    """basic.get-ok (60, 71): content follows."""

    CLASS_ID = 60
    METHOD_ID = 71
    INDEX = 0x003C0047
    NAME = "basic.get-ok"
    SYNCHRONOUS = False
    HAS_CONTENT = True

    delivery_tag: int = 0
    redelivered: bool = False
    exchange: str = ""
    routing_key: str = ""
    message_count: int = 0

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        return (
            _U64_U8.pack(self.delivery_tag, 1 if self.redelivered else 0)
            + pack_shortstr(self.exchange)
            + pack_shortstr(self.routing_key)
            + _U32.pack(self.message_count)
        )

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id); 502 when malformed."""
        # A memoryview has no .decode(): the AttributeError branch retries on a bytes copy.
        b: bytes = buf  # type: ignore[assignment]
        try:
            delivery_tag, redelivered = _U64_U8.unpack_from(b, 0)
            end = 10 + b[9]
            exchange = b[10:end].decode()
            start = end + 1
            end = start + b[end]
            routing_key = b[start:end].decode()
            (message_count,) = _U32.unpack_from(b, end)
            return cls(delivery_tag, (redelivered & 1) != 0, exchange, routing_key, message_count)
        except AttributeError:
            return cls.decode(bytes(buf))
        except DECODE_ERRORS as exc:
            raise malformed(cls, exc) from None


@dataclass(slots=True)
class BasicAck(Method):
    """basic.ack (60, 80): sent by consumers, and by the broker to confirm publishes."""

    CLASS_ID = 60
    METHOD_ID = 80
    INDEX = 0x003C0050
    NAME = "basic.ack"
    SYNCHRONOUS = False
    HAS_CONTENT = False

    delivery_tag: int = 0
    multiple: bool = False

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        return _U64_U8.pack(self.delivery_tag, 1 if self.multiple else 0)

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id); 502 when malformed."""
        try:
            tag, bits = _U64_U8.unpack_from(buf, 0)
        except DECODE_ERRORS as exc:
            raise malformed(cls, exc) from None
        return cls(tag, (bits & 1) != 0)


@dataclass(slots=True)
class BasicReject(Method):
    """basic.reject (60, 90)."""

    CLASS_ID = 60
    METHOD_ID = 90
    INDEX = 0x003C005A
    NAME = "basic.reject"
    SYNCHRONOUS = False
    HAS_CONTENT = False

    delivery_tag: int = 0
    requeue: bool = True

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        return _U64_U8.pack(self.delivery_tag, 1 if self.requeue else 0)

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id); 502 when malformed."""
        try:
            tag, bits = _U64_U8.unpack_from(buf, 0)
        except DECODE_ERRORS as exc:
            raise malformed(cls, exc) from None
        return cls(tag, (bits & 1) != 0)


@dataclass(slots=True)
class BasicNack(Method):
    """basic.nack (60, 120): RabbitMQ's extension, both directions."""

    CLASS_ID = 60
    METHOD_ID = 120
    INDEX = 0x003C0078
    NAME = "basic.nack"
    SYNCHRONOUS = False
    HAS_CONTENT = False

    delivery_tag: int = 0
    multiple: bool = False
    requeue: bool = True

    def encode(self) -> bytes:
        """The method payload after class-id and method-id."""
        bits = (1 if self.multiple else 0) | (2 if self.requeue else 0)
        return _U64_U8.pack(self.delivery_tag, bits)

    @classmethod
    def decode(cls, buf: Buffer) -> Self:
        """Decode the method payload (after class-id and method-id); 502 when malformed."""
        try:
            tag, bits = _U64_U8.unpack_from(buf, 0)
        except DECODE_ERRORS as exc:
            raise malformed(cls, exc) from None
        return cls(tag, (bits & 1) != 0, (bits & 2) != 0)


HOT_METHODS: Final[tuple[type[Method], ...]] = (
    BasicPublish,
    BasicReturn,
    BasicDeliver,
    BasicGetOk,
    BasicAck,
    BasicReject,
    BasicNack,
)
