"""The stream protocol's pure parts with plain bytes: frame splitting and reading, osiris chunks, and the
AMQP 1.0 <-> AMQP 0.9.1 message conversion."""

from __future__ import annotations

import struct
import zlib

import pytest

from ottermq.amqp.amqp10 import from_amqp10, sections, to_amqp10
from ottermq.amqp.properties import BasicProperties, decode_properties, encode_properties
from ottermq.streamproto import codec
from ottermq.streamproto.chunk import HEADER, chunk, parse_chunk
from ottermq.streamproto.codec import FrameError, FrameSplitter, Reader


def test_splitter_cuts_frames_across_reads() -> None:
    data = codec.frame(codec.HEARTBEAT, b"") + codec.frame(
        codec.OPEN, b"\x00\x00\x00\x07" + codec.string("/")
    )
    splitter = FrameSplitter()
    frames = [bytes(f) for piece in (data[:3], data[3:11], data[11:]) for f in splitter.feed(piece)]
    assert frames == [b"\x00\x17\x00\x01", b"\x00\x15\x00\x01\x00\x00\x00\x07\x00\x01/"]


def test_splitter_refuses_a_frame_over_the_maximum_before_buffering_it() -> None:
    with pytest.raises(FrameError) as caught:
        FrameSplitter(1 << 20).feed(struct.pack(">I", 1 << 30))
    assert caught.value.code == codec.FRAME_TOO_LARGE


@pytest.mark.parametrize(
    "fields",
    [b"", b"\x00", b"\x00\x05ab", b"\x7f\xff\xff\xff", b"\x00\x02\xff\xfe"],
)
def test_reader_turns_short_or_bad_fields_into_unknown_frame(fields: bytes) -> None:
    reader = Reader(memoryview(fields))
    with pytest.raises(FrameError) as caught:
        if fields.startswith(b"\x7f"):
            reader.properties()
        else:
            reader.string()
    assert caught.value.code == codec.UNKNOWN_FRAME


def test_reader_refuses_a_negative_length_such_as_a_sub_entry_batch() -> None:
    assert bytes(Reader(memoryview(b"\xff\xff\xff\xff")).bytes()) == b""  # -1: null
    with pytest.raises(FrameError):
        Reader(memoryview(b"\x80\x00\x05\x00\x00\x00\x10")).bytes()


def test_a_published_sub_entry_batch_is_refused_with_a_reason_naming_it() -> None:
    # rstream's send_sub_entry: publishing id, then entry type 0x80 | compression << 4 where a plain
    # message has its int32 size. The client is told why its connection is closed (an example's log).
    for entry_type in (0x80, 0x90):
        frame = b"\x00" * 7 + b"\x01" + bytes([entry_type]) + b"\x00\x64" + b"\x00" * 8
        with pytest.raises(FrameError) as caught:
            Reader(memoryview(frame)).message()
        assert caught.value.code == codec.UNKNOWN_FRAME
        assert str(caught.value) == "sub-entry batching is not supported"


def test_response_layout() -> None:
    assert (
        codec.response(codec.OPEN, 9, codec.OK) == b"\x00\x00\x00\x0a\x80\x15\x00\x01\x00\x00\x00\x09\x00\x01"
    )


def test_chunk_layout_and_crc() -> None:
    parts = chunk(42, 1_700_000_000_000, [b"", b"abc", b"x" * 1000])
    assert parts[2] == b"" and parts[4] == b"abc"  # the stored bytes themselves, not copies
    data = b"".join(parts)
    magic, kind, entries, records, stamp, _epoch, first, crc, length, trailer, _ = HEADER.unpack_from(data)
    assert (magic, kind, entries, records, stamp, first, trailer) == (0x50, 0, 3, 3, 1_700_000_000_000, 42, 0)
    assert HEADER.size == 48 and length == len(data) - 48 and crc == zlib.crc32(data[48:])
    assert parse_chunk(data) == (42, 1_700_000_000_000, [b"", b"abc", b"x" * 1000])


def test_amqp091_to_amqp10_and_back() -> None:
    props = BasicProperties(
        content_type="text/plain",
        content_encoding="gzip",
        headers={"s": "v", "i": -5, "b": True},
        delivery_mode=2,
        priority=3,
        correlation_id="c",
        reply_to="r",
        message_id="m",
        timestamp=1_700_000_000,
        type="t",
        user_id="guest",
    )
    message = to_amqp10(encode_properties(props), b"body")
    assert [code for code, _, _ in sections(message)] == [0x70, 0x73, 0x74, 0x75]
    raw, body = from_amqp10(message)
    assert body == b"body"
    back = decode_properties(raw)
    assert back == props


def test_amqp10_value_bodies_and_garbage() -> None:
    # amqp-value holding a string (0x77 section with str8)
    assert from_amqp10(b"\x00\x53\x77\xa1\x02hi")[1] == b"hi"
    with pytest.raises(ValueError):
        from_amqp10(b"\x00\x53\x75\xb0\x00\x00\x00\xff")  # a data section longer than the message
    with pytest.raises(ValueError):
        from_amqp10(b"\x99")
