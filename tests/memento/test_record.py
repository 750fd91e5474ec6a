"""Record framing and segment headers, as FORMAT.md states them."""

from __future__ import annotations

import struct

import crc32c
import pytest

from memento.record import (
    FRAME,
    HEAD_SIZE,
    LEGACY_FRAME,
    LEGACY_HEAD_SIZE,
    TYPE_SEAL,
    append_to,
    encode,
    frame_of,
)
from memento.segment import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    SegmentHeader,
    decode_header,
    encode_header,
    parse_name,
    segment_name,
)


def test_record_bytes_match_format() -> None:
    when = 1_767_225_600_123_456
    raw = encode(7, 3, 42, b"hello", when)
    length, crc, rtype, flags, reserved, lsn, time = struct.unpack_from("<IIBBHQQ", raw)
    assert len(raw) == HEAD_SIZE + 5 == 28 + 5 == 8 + length
    assert (length, rtype, flags, reserved, lsn, time) == (25, 7, 3, 0, 42, when)
    assert crc == crc32c.crc32c(raw[8:])
    assert raw[28:] == b"hello"


def test_version_2_record_bytes_have_no_time() -> None:
    raw = encode(7, 3, 42, b"hello", 999, timed=False)
    length, crc, rtype, flags, reserved, lsn = struct.unpack_from("<IIBBHQ", raw)
    assert len(raw) == LEGACY_HEAD_SIZE + 5 == 8 + length
    assert (length, rtype, flags, reserved, lsn) == (17, 7, 3, 0, 42)
    assert crc == crc32c.crc32c(raw[8:])
    assert raw[20:] == b"hello"


def test_time_is_covered_by_the_crc() -> None:
    raw = bytearray(encode(7, 0, 42, b"hello", 5))
    raw[20] ^= 1
    assert struct.unpack_from("<I", raw, 4)[0] != crc32c.crc32c(bytes(raw[8:]))


def test_frames_by_version() -> None:
    assert frame_of(1) is frame_of(2) is LEGACY_FRAME
    assert frame_of(3) is FRAME
    raw = encode(7, 3, 42, b"hello", 77)
    assert FRAME.unpack(raw, 0)[2:] == (7, 3, 0, 42, 77)
    assert LEGACY_FRAME.unpack(encode(7, 3, 42, b"hello", timed=False), 0)[2:] == (7, 3, 0, 42, 0)


def test_empty_payload_still_has_nonzero_len() -> None:
    assert struct.unpack_from("<I", encode(TYPE_SEAL, 0, 9, b""))[0] == 20
    assert struct.unpack_from("<I", encode(TYPE_SEAL, 0, 9, b"", timed=False))[0] == 12


def test_append_to_equals_encode() -> None:
    buf = bytearray()
    append_to(buf, 5, 1, 100, memoryview(b"abc"), 7)
    append_to(buf, 6, 0, 101, b"")
    assert bytes(buf) == encode(5, 1, 100, b"abc", 7) + encode(6, 0, 101, b"")


def test_header_roundtrip_and_layout() -> None:
    raw = encode_header(3, 1000, 65536)
    assert len(raw) == HEADER_SIZE
    assert raw[:8] == MAGIC
    assert struct.unpack_from("<HHIQQQ", raw, 8) == (FORMAT_VERSION, 0, 64, 3, 1000, 65536)
    assert struct.unpack_from("<I", raw, 40)[0] == crc32c.crc32c(raw[:40])
    assert raw[44:60] == bytes(16)  # no log id given: all zeros, which claims no log
    assert struct.unpack_from("<I", raw, 60)[0] == crc32c.crc32c(raw[:60])
    assert decode_header(raw) == SegmentHeader(FORMAT_VERSION, 3, 1000, 65536)


def test_version_3_header_carries_the_log_id_under_its_second_crc() -> None:
    log_id = bytes(range(1, 17))
    raw = encode_header(3, 1000, 65536, log_id=log_id)
    assert raw[44:60] == log_id
    assert struct.unpack_from("<I", raw, 60)[0] == crc32c.crc32c(raw[:60])
    assert decode_header(raw) == SegmentHeader(3, 3, 1000, 65536, log_id)
    for offset in (44, 59, 60, 63):
        damaged = bytearray(raw)
        damaged[offset] ^= 0x01
        assert isinstance(decode_header(bytes(damaged)), str), offset


@pytest.mark.parametrize("version", [1, 2])
def test_version_1_and_2_headers_have_no_id_and_zero_padding(version: int) -> None:
    raw = encode_header(3, 1000, 65536, version=version, log_id=bytes(range(16)))
    assert raw[44:] == bytes(20)
    assert decode_header(raw) == SegmentHeader(version, 3, 1000, 65536, None)
    assert "padding" in str(decode_header(raw[:50] + b"\x01" + raw[51:]))


@pytest.mark.parametrize("offset", [0, 8, 16, 24, 32, 40])
def test_header_damage_is_detected(offset: int) -> None:
    raw = bytearray(encode_header(3, 1000, 65536))
    raw[offset] ^= 0x10
    assert isinstance(decode_header(bytes(raw)), str)


def test_future_version_header_is_reported_not_damaged() -> None:
    header = decode_header(encode_header(1, 1, 4096, version=FORMAT_VERSION + 1))
    assert isinstance(header, SegmentHeader) and header.version == FORMAT_VERSION + 1


def test_short_header() -> None:
    assert "shorter" in str(decode_header(b"MEMWAL"))


def test_segment_names() -> None:
    name = segment_name(2, 0x1234)
    assert name == "0000000000000002-0000000000001234.wal"
    assert parse_name(name) == (2, 0x1234)
    assert parse_name(name + ".tmp") is None
    assert parse_name("junk.wal") is None
