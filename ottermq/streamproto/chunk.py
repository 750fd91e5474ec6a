"""Osiris chunks, the unit a stream-protocol subscriber receives: a 48-byte header then the entries.

Strategy: RabbitMQ sends a subscriber the chunks of its stream's log as they are on disk. OtterMQ's
stream records are Memento records (their own frame header, an append time and the AMQP 0.9.1 routing
fields before the message), so a segment's bytes cannot be sent as they are; a chunk is laid out at
delivery around the stored message bytes instead: the header, then per message a 4-byte size (a simple
entry: top bit clear) and the message bytes as stored, never re-encoded or joined (the parts go to the
socket's writelines). Only the header's CRC-32 of the entries is computed per chunk.

Header (big-endian): magic and version (0x50), chunk type (0: user), entries u16, records u32,
timestamp i64 (ms), epoch u64, first offset u64, CRC-32 of the entries u32, entries length u32,
trailer length u32 (0), bloom filter size u8 and 3 reserved bytes (0).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final

MAGIC_VERSION: Final = 0x50
USER_CHUNK: Final = 0
EPOCH: Final = 1
HEADER: Final = struct.Struct(">BBHIqQQIIII")
_SIZE: Final = struct.Struct(">I")
# Entries of one chunk: num_entries is a u16.
MAX_ENTRIES: Final = 0xFFFF


def chunk(first_offset: int, timestamp: int, messages: Sequence[bytes]) -> list[bytes]:
    """The chunk of `messages` (offsets from `first_offset` on), as parts: header, then size/bytes pairs."""
    parts: list[bytes] = [b""]
    crc = 0
    length = 0
    for message in messages:
        size = _SIZE.pack(len(message))
        crc = zlib.crc32(message, zlib.crc32(size, crc))
        length += 4 + len(message)
        parts.append(size)
        parts.append(message)
    count = len(messages)
    parts[0] = HEADER.pack(
        MAGIC_VERSION, USER_CHUNK, count, count, timestamp, EPOCH, first_offset, crc, length, 0, 0
    )
    return parts


def parse_chunk(data: bytes) -> tuple[int, int, list[bytes]]:
    """(first offset, timestamp, messages) of a chunk made by `chunk` (tests and tools); ValueError if bad."""
    magic, kind, entries, _records, timestamp, _epoch, first, crc, length, _trailer, _bloom = (
        HEADER.unpack_from(data)
    )
    body = data[HEADER.size : HEADER.size + length]
    if magic != MAGIC_VERSION or kind != USER_CHUNK or len(body) != length or zlib.crc32(body) != crc:
        raise ValueError("not a valid user chunk")
    messages: list[bytes] = []
    pos = 0
    for _ in range(entries):
        (size,) = _SIZE.unpack_from(body, pos)
        if size & 0x80000000:
            raise ValueError("sub-batch entries are not made here")
        messages.append(body[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return first, timestamp, messages
