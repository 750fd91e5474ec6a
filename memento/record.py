"""Record framing: the bytes of one log record, and the values a reader gets back.

Strategy: a record is `u32 len | u32 crc32c | u8 type | u8 flags | u16 reserved | u64 lsn | payload`, all
little-endian. `len` counts the bytes after the crc field (12 + payload length), so a real record never has
len == 0 and a zero word marks the end of data in a preallocated segment. The crc32c covers exactly those
`len` bytes (type through the end of the payload). See FORMAT.md.

`Record` and `RecordPosition` are NamedTuples rather than frozen dataclasses: replay creates one per record
and must reach hundreds of thousands per second; a tuple is immutable, typed and several times cheaper.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

import crc32c

PREFIX: Final = struct.Struct("<II")  # len, crc
BODY_HEAD: Final = struct.Struct("<BBHQ")  # type, flags, reserved, lsn
HEAD: Final = struct.Struct("<IIBBHQ")  # the whole 20-byte record header
HEAD_SIZE: Final = HEAD.size
BODY_HEAD_SIZE: Final = BODY_HEAD.size
MAX_LEN: Final = 0xFFFF_FFFF

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

_crc = crc32c.crc32c
_pack_body_head = BODY_HEAD.pack
_pack_prefix = PREFIX.pack


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


def encode(rtype: int, flags: int, lsn: int, payload: bytes | bytearray | memoryview) -> bytes:
    """The full bytes of one record."""
    body_head = _pack_body_head(rtype, flags, 0, lsn)
    return _pack_prefix(BODY_HEAD_SIZE + len(payload), _crc(payload, _crc(body_head))) + body_head + payload


def append_to(
    buf: bytearray, rtype: int, flags: int, lsn: int, payload: bytes | bytearray | memoryview
) -> None:
    """Append the bytes of one record to `buf` (the hot path: no intermediate record object)."""
    body_head = _pack_body_head(rtype, flags, 0, lsn)
    buf += _pack_prefix(BODY_HEAD_SIZE + len(payload), _crc(payload, _crc(body_head)))
    buf += body_head
    buf += payload


def record_size(payload_len: int) -> int:
    """Bytes a record with a payload of this length takes in a segment."""
    return HEAD_SIZE + payload_len
