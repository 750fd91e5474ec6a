"""Primitive AMQP field codecs shared by methods, tables and properties.

Strategy: decoders index a ``bytes`` or ``memoryview`` buffer with precompiled ``struct.Struct``
objects and return ``(value, new_offset)``. They check lengths explicitly where slicing would
silently truncate; whatever else can go wrong on hostile input (``struct.error``, ``IndexError``,
``UnicodeDecodeError``...) is caught once per decode by the caller (``DECODE_ERRORS``) and turned
into a 502 connection error, so a try block costs nothing on the good path.
"""

import struct
from typing import Final

from ottermq.amqp.constants import SYNTAX_ERROR
from ottermq.amqp.errors import AMQPConnectionError

Buffer = bytes | bytearray | memoryview

U8: Final = struct.Struct(">B")
U16: Final = struct.Struct(">H")
U32: Final = struct.Struct(">I")
U64: Final = struct.Struct(">Q")
I8: Final = struct.Struct(">b")
I16: Final = struct.Struct(">h")
I32: Final = struct.Struct(">i")
I64: Final = struct.Struct(">q")
F32: Final = struct.Struct(">f")
F64: Final = struct.Struct(">d")

# What a decoder may raise on hostile bytes before it is converted to SYNTAX_ERROR.
DECODE_ERRORS: Final = (
    struct.error,
    IndexError,
    UnicodeDecodeError,
    ValueError,
    OverflowError,
    OSError,
    TypeError,
    KeyError,
    RecursionError,
)

SHORTSTR_MAX: Final = 255


def syntax_error(what: str, class_id: int = 0, method_id: int = 0) -> AMQPConnectionError:
    """Build the 502 connection error for undecodable input (the caller raises it)."""
    return AMQPConnectionError(SYNTAX_ERROR, f"SYNTAX_ERROR - {what}", class_id, method_id)


def read_shortstr(buf: Buffer, off: int) -> tuple[str, int]:
    """Decode a short string (octet length + UTF-8) at ``off``."""
    start = off + 1
    end = start + buf[off]
    if end > len(buf):
        raise syntax_error("truncated short string")
    return str(buf[start:end], "utf-8"), end


def read_longstr(buf: Buffer, off: int) -> tuple[bytes, int]:
    """Decode a long string (u32 length + octets) at ``off``; long strings are binary."""
    start = off + 4
    end = start + U32.unpack_from(buf, off)[0]
    if end > len(buf):
        raise syntax_error("truncated long string")
    return bytes(buf[start:end]), end


def pack_shortstr(value: str) -> bytes:
    """Encode a short string; raises ValueError when it exceeds 255 octets of UTF-8."""
    raw = value.encode()
    if len(raw) > SHORTSTR_MAX:
        raise ValueError(f"short string too long ({len(raw)} > 255 octets): {value[:40]!r}...")
    return bytes((len(raw),)) + raw


def pack_longstr(value: bytes | str) -> bytes:
    """Encode a long string (str is encoded as UTF-8)."""
    raw = value.encode() if isinstance(value, str) else value
    return U32.pack(len(raw)) + raw
