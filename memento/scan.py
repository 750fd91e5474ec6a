"""Scanning a segment's bytes: where its valid records end, and what lies after them.

Strategy: pure functions over bytes (no file access), so that every kind of damage is tested with plain
byte strings. The scanner walks records from the header on, checking length, crc and LSN contiguity, and
stops at the first record that fails, at a zero length word (end of data), at a seal, or at a record type
the registry does not know. After a stop that is not a clean end it searches the rest of the segment for
a later valid record whose LSN could only have been written after the damaged one: that decides between a
torn tail (repairable) and corruption of acknowledged data (refused). The record layout comes from the
segment header's version (memento.record.Frame), chosen once per segment; the loop reads only the fields
every version has (LEGACY_HEAD), so a version-3 segment is scanned as fast as an older one.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import struct
from collections.abc import Set
from dataclasses import dataclass
from typing import Final

import crc32c

from memento.record import FRAME, LEGACY_HEAD, TIME, TIME_OFFSET, TYPE_NONE, TYPE_SEAL, Frame, frame_of
from memento.segment import HEADER_SIZE, SegmentHeader, decode_header, parse_name

# What a scan reads: a file's bytes, or (faster: no copy) an mmap of it.
ByteSource = bytes | mmap.mmap

_U32: Final = struct.Struct("<I")
_NONZERO: Final = re.compile(rb"[^\x00]")
_BLOCK: Final = 1 << 20
_ZEROS: Final = bytes(_BLOCK)


@dataclass(frozen=True, slots=True)
class Damage:
    """Where a segment's valid data stops for a reason other than a clean end."""

    offset: int
    lsn: int  # the LSN the record at `offset` should have had
    reason: str


@dataclass(frozen=True, slots=True)
class Resync:
    """A valid record found after damage, whose LSN shows it was written after the damaged one."""

    offset: int
    lsn: int


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """What scanning one segment file found. `last_lsn` is base_lsn - 1 when it holds no record."""

    name: str
    seq: int
    base_lsn: int
    size: int
    header: SegmentHeader | None
    header_problem: str | None
    scanned: bool  # False: only the header was read (segment wholly covered by the snapshot)
    count: int = 0
    last_lsn: int = -1
    data_end: int = HEADER_SIZE
    sealed: bool = False
    seal_lsn: int = -1
    damage: Damage | None = None
    resync: Resync | None = None
    unknown_type: Damage | None = None
    dirty_end: int = HEADER_SIZE  # end of the last non-zero byte at or after data_end
    last_time: int = 0  # time of the last valid record or seal (0: none, or a format before version 3)

    @property
    def next_lsn(self) -> int:
        """The LSN the next segment must start with, as far as this one tells."""
        return self.seal_lsn if self.sealed else self.last_lsn + 1


# Most data/hole regions `zeros_from` walks before it gives up (a file so fragmented is read whole).
_MAX_REGIONS: Final = 1024


def zeros_from(fd: int, size: int) -> int:
    """Where the file's trailing run of holes begins: every byte from there to `size` reads as zero,
    without being read. `size` when the file ends in data, or its file system does not tell.

    A stream's segment is a sparse file of 500 MB holding what was written into it; scanning its
    holes byte by byte costs a restart about a second per stream, and on tmpfs every page read is
    allocated, so the whole segment would take memory."""
    end = 0
    pos = 0
    for _ in range(_MAX_REGIONS):
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # holes only from `pos` on
                return min(end, size)
            return size
        if start >= size:
            return min(end, size)
        end = os.lseek(fd, start, os.SEEK_HOLE)
        if end >= size:
            return size
        pos = end
    return size


def next_nonzero(data: ByteSource, pos: int, limit: int | None = None) -> int | None:
    """Offset of the first non-zero byte at or after `pos` (and before `limit`, past which the caller
    knows every byte is zero), or None (block compares: a regex alone is ten times slower over a
    mostly-zero 64 MiB segment)."""
    size = len(data) if limit is None else min(len(data), limit)
    while pos < size:
        end = min(size, pos + _BLOCK)
        if data[pos:end] != (_ZEROS if end - pos == _BLOCK else _ZEROS[: end - pos]):
            found = _NONZERO.search(data, pos, end)
            assert found is not None
            return found.start()
        pos = end
    return None


def last_nonzero_end(data: ByteSource | memoryview, start: int, limit: int | None = None) -> int:
    """One past the last non-zero byte of data[start:] (all zero from `limit` on, when given), or
    `start` when it is all zeros."""
    end = len(data) if limit is None else min(len(data), limit)
    while end > start:
        lo = max(start, end - _BLOCK)
        stripped = bytes(data[lo:end]).rstrip(b"\0")
        if stripped:
            return lo + len(stripped)
        end = lo
    return start


def find_resync(data: ByteSource, start: int, expected_lsn: int, frame: Frame = FRAME) -> Resync | None:
    """The first valid record at or after `start` whose LSN is one that could follow the damage.

    Valid means a plausible length and a matching crc. A record with an LSN below `expected_lsn` (or too
    far above it to fit in the bytes in between) is stale junk: skipped, not evidence. `frame` is the
    segment's record layout.
    """
    size = len(data)
    pos = start
    crc = crc32c.crc32c
    head_size = frame.head_size
    min_len = frame.min_len
    while pos + head_size <= size:
        (length,) = _U32.unpack_from(data, pos)
        if length == 0:
            found = next_nonzero(data, pos + 4)
            if found is None:
                return None
            pos = max(pos + 1, found - 3)
            continue
        end = pos + 8 + length
        if length >= min_len and end <= size:
            _len, stored, rtype, _flags, reserved, lsn = LEGACY_HEAD.unpack_from(data, pos)
            if reserved == 0 and rtype != TYPE_NONE and crc(memoryview(data)[pos + 8 : end]) == stored:
                if expected_lsn <= lsn <= expected_lsn + (pos - start) // head_size + 1:
                    return Resync(pos, lsn)
                pos = end
                continue
        pos += 1
    return None


def scan_segment(
    name: str,
    data: ByteSource,
    registry: Set[int] | None = None,
    *,
    headers_only: bool = False,
    zeros: int | None = None,
) -> SegmentScan:
    """Scan the whole file content `data` of segment `name`; `registry` lists the known record types
    (None accepts every type). `zeros`: every byte from there on is known to be zero (`zeros_from`), so
    the search for bytes after the end of data stops there."""
    parsed = parse_name(name)
    seq, base = parsed if parsed is not None else (-1, -1)
    header = decode_header(data)
    if isinstance(header, str):
        return SegmentScan(name, seq, base, len(data), None, header, False)
    if headers_only:
        return SegmentScan(name, seq, base, len(data), header, None, False)
    size = len(data)
    view = memoryview(data)
    frame = frame_of(header.version)
    head_size = frame.head_size
    min_len = frame.min_len
    unpack = LEGACY_HEAD.unpack_from  # the fields every version has, at the same offsets
    crc = crc32c.crc32c
    pos = HEADER_SIZE
    last = -1  # offset of the last valid record (or seal)
    lsn = base
    count = 0
    damage: Damage | None = None
    unknown: Damage | None = None
    sealed = False
    seal_lsn = -1
    while True:
        if pos + head_size > size:
            if pos + 4 <= size and _U32.unpack_from(data, pos)[0] == 0:
                break
            if any(data[pos:]):
                damage = Damage(pos, lsn, "record header cut by the end of the file")
            break
        length, stored, rtype, _flags, _reserved, rlsn = unpack(data, pos)
        if length == 0:
            break
        end = pos + 8 + length
        if length < min_len:
            damage = Damage(pos, lsn, f"record length {length} is too small")
            break
        if end > size:
            damage = Damage(pos, lsn, f"record length {length} runs past the end of the file")
            break
        if crc(view[pos + 8 : end]) != stored:
            damage = Damage(pos, lsn, "record checksum mismatch")
            break
        if rlsn != lsn:
            damage = Damage(pos, lsn, f"record has LSN {rlsn} where {lsn} was expected")
            break
        if rtype == TYPE_SEAL:
            sealed = True
            seal_lsn = rlsn
            last = pos
            pos = end
            break
        if rtype == TYPE_NONE:
            damage = Damage(pos, lsn, "record of type 0")
            break
        if registry is not None and rtype not in registry:
            unknown = Damage(pos, lsn, f"unknown record type {rtype}")
            break
        count += 1
        lsn += 1
        last = pos
        pos = end
    view.release()
    last_time = TIME.unpack_from(data, last + TIME_OFFSET)[0] if last >= 0 and frame.timed else 0
    resync: Resync | None = None
    if damage is not None:
        resync = find_resync(data, damage.offset + 1, lsn, frame)
    elif unknown is None and not sealed and next_nonzero(data, pos, zeros) is not None:
        # Bytes after the end of data: either later records behind a zeroed span (corruption) or junk
        # from a torn write (a torn tail, to be zeroed so that later appends never meet it).
        resync = find_resync(data, pos, lsn, frame)
        damage = Damage(
            pos,
            lsn,
            "zeroed bytes before later valid records" if resync else "non-zero bytes after the end of data",
        )
    dirty_end = last_nonzero_end(data, pos, zeros) if damage is not None or unknown is not None else pos
    return SegmentScan(
        name,
        seq,
        base,
        size,
        header,
        None,
        True,
        count,
        lsn - 1,
        pos,
        sealed,
        seal_lsn,
        damage,
        resync,
        unknown,
        dirty_end,
        last_time,
    )
