"""Record framing: the bytes of one log record, and the values a reader gets back.

Strategy: a record is `u32 len | u32 crc32c | u8 type | u8 flags | u16 reserved | u64 lsn | u64 time |
payload`, all little-endian (format version 3; versions 1 and 2 have no `time`). `len` counts the bytes
after the crc field (20 + payload length; 12 + payload length before version 3), so a real record never has
len == 0 and a zero word marks the end of data in a preallocated segment. The crc32c covers exactly those
`len` bytes (type through the end of the payload). See FORMAT.md.

The layout is a property of the segment (its header's version), never of the record: readers pick a
`Frame` once per segment and run the same loop for every version. The first 20 bytes of a version-3
header are a whole version-2 header, so loops that need neither the time nor the payload read every
version with `LEGACY_HEAD` and only the frame's sizes differ. Appends always write the current version.

`Record` and `RecordPosition` are NamedTuples rather than frozen dataclasses: replay creates one per record
and must reach hundreds of thousands per second; a tuple is immutable, typed and several times cheaper.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import crc32c

PREFIX: Final = struct.Struct("<II")  # len, crc
BODY_HEAD: Final = struct.Struct("<BBHQQ")  # type, flags, reserved, lsn, time
HEAD: Final = struct.Struct("<IIBBHQQ")  # the whole 28-byte record header (format version 3)
HEAD_SIZE: Final = HEAD.size
BODY_HEAD_SIZE: Final = BODY_HEAD.size
MAX_LEN: Final = 0xFFFF_FFFF
TIME: Final = struct.Struct("<Q")
TIME_OFFSET: Final = 20  # where `time` sits in a version-3 record

# Format versions 1 and 2: no time. Their header is also the first LEGACY_HEAD_SIZE bytes of a version-3 one.
LEGACY_BODY_HEAD: Final = struct.Struct("<BBHQ")  # type, flags, reserved, lsn
LEGACY_HEAD: Final = struct.Struct("<IIBBHQ")  # len, crc, type, flags, reserved, lsn
LEGACY_HEAD_SIZE: Final = LEGACY_HEAD.size
LEGACY_BODY_HEAD_SIZE: Final = LEGACY_BODY_HEAD.size
FIRST_TIMED_VERSION: Final = 3  # the first segment format version whose records carry a time

# Record types. 0 is never a record; the engine keeps 0xF0..0xFF for itself; callers use 1..0xEF.
TYPE_NONE: Final = 0
TYPE_SEAL: Final = 0xFF  # last record of a sealed segment; carries the next segment's base LSN
ENGINE_TYPES: Final = frozenset({TYPE_SEAL})
FIRST_ENGINE_TYPE: Final = 0xF0
USER_TYPES: Final = frozenset(range(1, FIRST_ENGINE_TYPE))

# Flags: callers own bits 0x01..0x20; the engine sets 0x80 on records that compaction copied forward and
# (since format version 2) 0x40 with it: the copy's payload then starts with the LSN of the original record,
# so a reader that kept the original's LSN can tell the copy is the record it looks for.
FLAG_ORIGIN: Final = 0x40
FLAG_RELOCATED: Final = 0x80
USER_FLAGS_MASK: Final = 0x3F
ORIGIN: Final = struct.Struct("<Q")  # the LSN a FLAG_ORIGIN copy's payload starts with

SEAL_SIZE: Final = HEAD_SIZE  # a seal record has no payload
LEGACY_SEAL_SIZE: Final = LEGACY_HEAD_SIZE

_crc = crc32c.crc32c
_pack_body_head = BODY_HEAD.pack
_pack_legacy_body_head = LEGACY_BODY_HEAD.pack
_pack_prefix = PREFIX.pack
_unpack_legacy = LEGACY_HEAD.unpack_from

# (len, crc, type, flags, reserved, lsn, time) of the record header at an offset of a buffer.
HeadReader = Callable[[Any, int], tuple[Any, ...]]


_NO_TIME: Final = (0,)


def _unpack_legacy_head(data: Any, offset: int) -> tuple[Any, ...]:
    # One Python call per record on top of the C unpack: only segments older than version 3 pay it.
    return _unpack_legacy(data, offset) + _NO_TIME


class Frame(NamedTuple):
    """The record header of one segment format version; readers choose it once per segment."""

    timed: bool  # records carry a time
    head_size: int  # bytes before the payload
    min_len: int  # the smallest valid `len` (a record with an empty payload)
    unpack: HeadReader  # (len, crc, type, flags, reserved, lsn, time); time 0 when not timed


FRAME: Final = Frame(True, HEAD_SIZE, BODY_HEAD_SIZE, HEAD.unpack_from)
LEGACY_FRAME: Final = Frame(False, LEGACY_HEAD_SIZE, LEGACY_BODY_HEAD_SIZE, _unpack_legacy_head)


def frame_of(version: int) -> Frame:
    """The record layout of segments of format `version`."""
    return FRAME if version >= FIRST_TIMED_VERSION else LEGACY_FRAME


class RecordPosition(NamedTuple):
    """Where a record starts: the segment's sequence number and the byte offset in that file."""

    segment: int
    offset: int


class Record(NamedTuple):
    """One record as read back from the log."""

    lsn: int
    type: int
    flags: int
    payload: bytes
    position: RecordPosition
    time: int = 0  # wall-clock microseconds since the epoch when appended; 0 before format version 3


def original(record: Record) -> tuple[int, bytes]:
    """(LSN of the record as first written, the caller's payload). For a record never copied that is its
    own LSN; a compaction copy carries its original's LSN (FLAG_ORIGIN); 0 for a copy made by format
    version 1, which did not record it."""
    flags = record.flags
    if not flags & FLAG_RELOCATED:
        return record.lsn, record.payload
    if flags & FLAG_ORIGIN:
        return ORIGIN.unpack_from(record.payload)[0], record.payload[ORIGIN.size :]
    return 0, record.payload


def encode(
    rtype: int,
    flags: int,
    lsn: int,
    payload: bytes | bytearray | memoryview,
    time: int = 0,
    *,
    timed: bool = True,
) -> bytes:
    """The full bytes of one record: version 3 (with `time`), or versions 1-2 when not `timed`."""
    if timed:
        body_head = _pack_body_head(rtype, flags, 0, lsn, time)
    else:
        body_head = _pack_legacy_body_head(rtype, flags, 0, lsn)
    return _pack_prefix(len(body_head) + len(payload), _crc(payload, _crc(body_head))) + body_head + payload


def append_to(
    buf: bytearray, rtype: int, flags: int, lsn: int, payload: bytes | bytearray | memoryview, time: int = 0
) -> None:
    """Append the bytes of one record to `buf` (the hot path: no intermediate record object)."""
    body_head = _pack_body_head(rtype, flags, 0, lsn, time)
    buf += _pack_prefix(BODY_HEAD_SIZE + len(payload), _crc(payload, _crc(body_head)))
    buf += body_head
    buf += payload


def record_size(payload_len: int) -> int:
    """Bytes a record with a payload of this length takes in a segment (current format)."""
    return HEAD_SIZE + payload_len
