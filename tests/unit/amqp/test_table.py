"""Field tables: every type letter, against pika, and malformed input."""

import datetime
import decimal
import struct
from typing import Any

import pika.data
import pytest

from ottermq.amqp.constants import SYNTAX_ERROR
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.table import Long, decode_array, decode_table, encode_array, encode_table

UTC = datetime.UTC


def raw_table(*entries: tuple[str, bytes]) -> bytes:
    """A table from (key, type letter + value bytes) entries."""
    body = b"".join(bytes((len(k),)) + k.encode() + v for k, v in entries)
    return struct.pack(">I", len(body)) + body


# (type letter + encoded value, decoded Python value) for every type RabbitMQ knows.
TYPED: list[tuple[str, bytes, Any]] = [
    ("t", b"t\x01", True),
    ("t0", b"t\x00", False),
    ("b", b"b\xff", -1),
    ("B", b"B\xff", 255),
    ("s", b"s" + struct.pack(">h", -30000), -30000),
    ("u", b"u" + struct.pack(">H", 60000), 60000),
    ("I", b"I" + struct.pack(">i", -(2**31)), -(2**31)),
    ("i", b"i" + struct.pack(">I", 2**32 - 1), 2**32 - 1),
    ("l", b"l" + struct.pack(">q", -(2**63)), Long(-(2**63))),
    ("f", b"f" + struct.pack(">f", 1.5), 1.5),
    ("d", b"d" + struct.pack(">d", -2.25), -2.25),
    ("D", b"D\x02" + struct.pack(">i", -12345), decimal.Decimal("-123.45")),
    ("S", b"S\x00\x00\x00\x04h\xc3\xa9!", "hé!"),
    ("Sbin", b"S\x00\x00\x00\x02\xff\xfe", b"\xff\xfe"),
    ("x", b"x\x00\x00\x00\x03\x00\x01\x02", b"\x00\x01\x02"),
    ("A", b"A\x00\x00\x00\x06I\x00\x00\x00\x05V", [5, None]),
    ("T", b"T" + struct.pack(">Q", 1_700_000_000), datetime.datetime.fromtimestamp(1_700_000_000, UTC)),
    ("F", b"F" + raw_table(("k", b"V")), {"k": None}),
    ("V", b"V", None),
]


def test_decode_array() -> None:
    assert decode_array(b"\x00\x00\x00\x06I\x00\x00\x00\x05V", 0) == ([5, None], 10)
    with pytest.raises(AMQPConnectionError):
        decode_array(b"\x00\x00\x00\x06I\x00", 0)


@pytest.mark.parametrize(("key", "encoded", "value"), TYPED, ids=[t[0] for t in TYPED])
def test_decode_every_type(key: str, encoded: bytes, value: Any) -> None:
    raw = raw_table((key, encoded))
    table, end = decode_table(b"junk" + raw + b"tail", 4)
    assert end == 4 + len(raw)
    assert table == {key: value}
    assert type(table[key]) is type(value)
    # Re-encoding keeps the value (the type letter may widen: b -> I, f -> d...).
    assert decode_table(encode_table(table), 0)[0] == table


def test_a_decoded_long_stays_a_long() -> None:
    """'l' decodes to `Long`, which encodes as 'l' again even when it would fit 'I'."""
    raw = raw_table(("n", b"l" + struct.pack(">q", 3)))
    table, _ = decode_table(raw, 0)
    assert table == {"n": 3} and isinstance(table["n"], Long)
    assert encode_table(table) == raw
    assert encode_table({"n": 3}) == raw_table(("n", b"I" + struct.pack(">i", 3)))


def test_encode_picks_types() -> None:
    table = {
        "small": 5,
        "neg": -(2**31),
        "big": 2**31,
        "huge": -(2**63),
        "s": "x",
        "b": b"y",
        "t": True,
        "none": None,
        "f": 0.5,
        "list": [1, "a"],
        "tuple": (2,),
    }
    raw = encode_table(table)
    assert b"small" + b"I" in raw
    assert b"big" + b"l" in raw
    assert b"s" + b"S\x00\x00\x00\x01x" in raw
    assert b"b" + b"x\x00\x00\x00\x01y" in raw
    assert b"f" + b"d" in raw
    decoded, _ = decode_table(raw, 0)
    assert decoded == {**table, "tuple": [2]}
    assert encode_table(None) == encode_table({}) == b"\x00\x00\x00\x00"
    assert encode_array([1, None]) == b"\x00\x00\x00\x06I\x00\x00\x00\x01V"


def test_decimal_and_timestamp_encoding() -> None:
    table = {
        "d1": decimal.Decimal("1.50"),
        "d2": decimal.Decimal("-7"),
        "d3": decimal.Decimal("12E+2"),
        "ts": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "naive": datetime.datetime(2024, 5, 6, 7, 8, 9),
    }
    decoded, _ = decode_table(encode_table(table), 0)
    assert decoded["d1"] == decimal.Decimal("1.5")
    assert decoded["d2"] == -7
    assert decoded["d3"] == 1200
    assert decoded["ts"] == table["ts"]
    assert decoded["naive"] == table["ts"]
    with pytest.raises(ValueError):
        encode_table({"d": decimal.Decimal("1e20")})


def test_encoding_rejects_what_amqp_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_table({"k" * 256: 1})
    with pytest.raises(ValueError):
        encode_table({"k": 2**64})
    with pytest.raises(TypeError):
        encode_table({"k": object()})


PIKA_TABLE: dict[str, Any] = {
    "str": "hello wörld",
    "bytes": b"\x00\x01",
    "bool": False,
    "int": -42,
    "long": 2**40,
    "none": None,
    "dec": decimal.Decimal("3.25"),
    "ts": datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
    "nested": {"a": [1, "b", {"c": True}], "empty": {}},
    "array": [None, b"x", -1],
}


def test_pika_encodes_we_decode() -> None:
    pieces: list[bytes] = []
    pika.data.encode_table(pieces, PIKA_TABLE)
    raw = b"".join(pieces)
    assert decode_table(raw, 0) == (PIKA_TABLE, len(raw))
    # Same type choices as pika, so the bytes match too.
    assert encode_table(PIKA_TABLE) == raw


def test_we_encode_pika_decodes() -> None:
    raw = encode_table(PIKA_TABLE)
    decoded, end = pika.data.decode_table(raw, 0)
    assert end == len(raw)
    assert decoded == PIKA_TABLE


def test_pika_decodes_our_short_types() -> None:
    raw = raw_table(*[(k, v) for k, v, _ in TYPED if k not in ("A", "f", "d")])
    ours, _ = decode_table(raw, 0)
    theirs, _ = pika.data.decode_table(raw, 0)
    assert ours == theirs


def _assert_syntax_error(data: bytes) -> None:
    with pytest.raises(AMQPConnectionError) as info:
        decode_table(data, 0)
    assert info.value.reply_code == SYNTAX_ERROR
    assert info.value.reply_text.startswith("SYNTAX_ERROR - ")


def test_every_truncation_is_a_syntax_error() -> None:
    raw = encode_table(PIKA_TABLE)
    for cut in range(len(raw)):
        _assert_syntax_error(raw[:cut])


def test_malformed_tables() -> None:
    _assert_syntax_error(raw_table(("k", b"Z")))  # unknown type
    _assert_syntax_error(b"\x00\x00\x00\x03\x05abc")  # key longer than the table
    _assert_syntax_error(b"\x00\x00\x00\x02\x01kV")  # entry overruns the declared size
    _assert_syntax_error(raw_table(("k", b"S\xff\xff\xff\xff")))
    _assert_syntax_error(raw_table(("k", b"T" + struct.pack(">Q", 2**63))))  # beyond datetime


def test_invalid_utf8_key() -> None:
    _assert_syntax_error(b"\x00\x00\x00\x03\x01\xffV")


def _nested(depth: int) -> bytes:
    raw = b"\x00\x00\x00\x00"
    for _ in range(depth):
        raw = raw_table(("n", b"F" + raw))
    return raw


def _nested_arrays(depth: int) -> bytes:
    raw = b"\x00\x00\x00\x00"
    for _ in range(depth):
        raw = struct.pack(">I", len(raw) + 1) + b"A" + raw
    return raw_table(("a", b"A" + raw))


def test_nesting_is_bounded() -> None:
    table, _ = decode_table(_nested(100), 0)
    assert table["n"]["n"]["n"] is not None
    _assert_syntax_error(_nested(101))
    _assert_syntax_error(_nested(5000))
    decode_table(_nested_arrays(50), 0)
    _assert_syntax_error(_nested_arrays(5000))
