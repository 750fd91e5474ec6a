"""AMQP field tables and field arrays, with RabbitMQ's type letters.

Strategy: one recursive decoder dispatching on the type octet, most frequent types first
(strings, ints, bools, nested tables: what client properties and x-arguments hold). Nesting is
bounded (``MAX_DEPTH``) so that a hostile peer cannot exhaust the stack. Any malformed input ends
in a 502 SYNTAX_ERROR connection error, never in another exception.

Types (RabbitMQ's reading of the 0-9-1 errata): t bool, b int8, B uint8, s int16, u uint16,
I int32, i uint32, l int64, f float32, d float64, D decimal (scale octet + int32), S long string,
x byte array, A array, T timestamp (u64 seconds, UTC), F table, V void.
"""

import calendar
import datetime
import decimal
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ottermq.amqp.wire import (
    DECODE_ERRORS,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Buffer,
    pack_shortstr,
    syntax_error,
)

MAX_DEPTH: Final = 100

_UTC: Final = datetime.UTC
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_DECIMAL_TEN: Final = decimal.Decimal(10)


class Long(int):
    """An integer sent as a signed 64-bit field ('l') whatever its value. A decoded 'l' becomes one, so
    a table decoded and encoded again keeps its types; RabbitMQ writes x-death counts this way and some
    clients read them as 64-bit only."""

    __slots__ = ()


_U8_unpack = U8.unpack_from
_I8_unpack = I8.unpack_from
_I16_unpack = I16.unpack_from
_U16_unpack = U16.unpack_from
_I32_unpack = I32.unpack_from
_U32_unpack = U32.unpack_from
_I64_unpack = I64.unpack_from
_U64_unpack = U64.unpack_from
_F32_unpack = F32.unpack_from
_F64_unpack = F64.unpack_from


def decode_table(buf: Buffer, offset: int) -> tuple[dict[str, Any], int]:
    """Decode the field table at ``offset``; returns the table and the offset after it.

    Raises ``AMQPConnectionError(502)`` on any malformed input.
    """
    try:
        return _table(buf, offset, 0)
    except DECODE_ERRORS as exc:
        raise syntax_error(f"malformed field table ({type(exc).__name__})") from None


def decode_array(buf: Buffer, offset: int) -> tuple[list[Any], int]:
    """Decode the field array (u32 size + values) at ``offset``."""
    try:
        return _array(buf, offset, 0)
    except DECODE_ERRORS as exc:
        raise syntax_error(f"malformed field array ({type(exc).__name__})") from None


def _table(buf: Buffer, off: int, depth: int) -> tuple[dict[str, Any], int]:
    if depth > MAX_DEPTH:
        raise syntax_error("field table nested too deeply")
    end = off + 4 + _U32_unpack(buf, off)[0]
    if end > len(buf):
        raise syntax_error("truncated field table")
    off += 4
    result: dict[str, Any] = {}
    while off < end:
        key_end = off + 1 + buf[off]
        if key_end > end:
            raise syntax_error("truncated field table key")
        key = str(buf[off + 1 : key_end], "utf-8")
        result[key], off = _value(buf, key_end, depth)
    if off != end:
        raise syntax_error("field table overruns its size")
    return result, off


def _array(buf: Buffer, off: int, depth: int) -> tuple[list[Any], int]:
    if depth > MAX_DEPTH:
        raise syntax_error("field array nested too deeply")
    end = off + 4 + _U32_unpack(buf, off)[0]
    if end > len(buf):
        raise syntax_error("truncated field array")
    off += 4
    result: list[Any] = []
    append = result.append
    while off < end:
        value, off = _value(buf, off, depth)
        append(value)
    if off != end:
        raise syntax_error("field array overruns its size")
    return result, off


def _value(buf: Buffer, off: int, depth: int) -> tuple[Any, int]:
    kind = buf[off]
    off += 1
    if kind == 0x53:  # S
        start = off + 4
        end = start + _U32_unpack(buf, off)[0]
        if end > len(buf):
            raise syntax_error("truncated long string")
        raw = bytes(buf[start:end])
        try:
            return raw.decode(), end
        except UnicodeDecodeError:
            return raw, end
    if kind == 0x49:  # I
        return _I32_unpack(buf, off)[0], off + 4
    if kind == 0x74:  # t
        return buf[off] != 0, off + 1
    if kind == 0x46:  # F
        return _table(buf, off, depth + 1)
    if kind == 0x6C:  # l
        return Long(_I64_unpack(buf, off)[0]), off + 8
    if kind == 0x41:  # A
        return _array(buf, off, depth + 1)
    if kind == 0x56:  # V
        return None, off
    if kind == 0x78:  # x
        start = off + 4
        end = start + _U32_unpack(buf, off)[0]
        if end > len(buf):
            raise syntax_error("truncated byte array")
        return bytes(buf[start:end]), end
    if kind == 0x62:  # b
        return _I8_unpack(buf, off)[0], off + 1
    if kind == 0x42:  # B
        return _U8_unpack(buf, off)[0], off + 1
    if kind == 0x73:  # s
        return _I16_unpack(buf, off)[0], off + 2
    if kind == 0x75:  # u
        return _U16_unpack(buf, off)[0], off + 2
    if kind == 0x69:  # i
        return _U32_unpack(buf, off)[0], off + 4
    if kind == 0x66:  # f
        return _F32_unpack(buf, off)[0], off + 4
    if kind == 0x64:  # d
        return _F64_unpack(buf, off)[0], off + 8
    if kind == 0x44:  # D
        scale = buf[off]
        raw_int = _I32_unpack(buf, off + 1)[0]
        return decimal.Decimal(raw_int).scaleb(-scale), off + 5
    if kind == 0x54:  # T
        seconds = _U64_unpack(buf, off)[0]
        return datetime.datetime.fromtimestamp(seconds, _UTC), off + 8
    raise syntax_error(f"unknown field type {kind:#04x}")


def encode_table(table: Mapping[str, Any] | None) -> bytes:
    """Encode a field table (u32 size + entries); ``None`` encodes as the empty table.

    Ints become ``I`` when they fit int32, else ``l``; str ``S``; bytes ``x``; float ``d``.
    Raises ValueError/TypeError on values AMQP cannot carry.
    """
    if not table:
        return b"\x00\x00\x00\x00"
    parts: list[bytes] = []
    for key, value in table.items():
        parts.append(pack_shortstr(key))
        _encode_value(parts, value)
    body = b"".join(parts)
    return U32.pack(len(body)) + body


def encode_array(values: Sequence[Any]) -> bytes:
    """Encode a field array (u32 size + values)."""
    parts: list[bytes] = []
    for value in values:
        _encode_value(parts, value)
    body = b"".join(parts)
    return U32.pack(len(body)) + body


def _encode_value(parts: list[bytes], value: Any) -> None:
    if isinstance(value, str):
        raw = value.encode()
        parts.append(b"S" + U32.pack(len(raw)))
        parts.append(raw)
    elif isinstance(value, bool):  # before int: bool is an int
        parts.append(b"t\x01" if value else b"t\x00")
    elif isinstance(value, int):
        if _INT32_MIN <= value <= _INT32_MAX and not isinstance(value, Long):
            parts.append(b"I" + I32.pack(value))
        elif _INT64_MIN <= value <= _INT64_MAX:
            parts.append(b"l" + I64.pack(value))
        else:
            raise ValueError(f"integer {value} does not fit a signed 64-bit field")
    elif isinstance(value, bytes | bytearray | memoryview):
        parts.append(b"x" + U32.pack(len(value)))
        parts.append(bytes(value))
    elif isinstance(value, Mapping):
        parts.append(b"F" + encode_table(value))
    elif isinstance(value, list | tuple):
        parts.append(b"A" + encode_array(value))
    elif value is None:
        parts.append(b"V")
    elif isinstance(value, float):
        parts.append(b"d" + F64.pack(value))
    elif isinstance(value, decimal.Decimal):
        parts.append(b"D" + _pack_decimal(value))
    elif isinstance(value, datetime.datetime):
        # Naive datetimes are taken as UTC, as RabbitMQ stores timestamps in UTC seconds.
        parts.append(b"T" + U64.pack(calendar.timegm(value.utctimetuple())))
    else:
        raise TypeError(f"cannot encode {type(value).__name__} in an AMQP field table")


def _pack_decimal(value: decimal.Decimal) -> bytes:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"cannot encode {value} as an AMQP decimal")
    if exponent >= 0:
        scale, digits = 0, int(value)
    else:
        scale, digits = -exponent, int(value.scaleb(-exponent))
    if scale > 255 or not _INT32_MIN <= digits <= _INT32_MAX:
        raise ValueError(f"decimal {value} does not fit scale octet + int32")
    return U8.pack(scale) + I32.pack(digits)
