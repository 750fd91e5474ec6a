"""The offset index of a stream's log: offset -> position and time -> offset in O(log n).

Strategy: a sparse index per segment, one entry (LSN, byte offset, append time in ms) for the segment's
first record and then one at least every `EVERY` bytes of records, so that positioning walks at most that
many bytes of record headers after two binary searches (over the segments' base LSNs, then over the
segment's entries). Times are searched the same way, over each segment's last record time and then its
entries' times (appends are stamped in order). Entries are made as records are appended (their position
is known then) and written to `index/<seq:016x>.idx` next to the log's `wal/` (24 bytes each, never
synced: the index is a hint). Opening checks what the files say against the log (entries beyond its end,
out of order, or of a segment that is gone are dropped) and walks what is not indexed (a segment's tail
after its last entry; a whole segment whose file is missing), so a crash costs at most a walk of each
segment's unindexed tail; a reader that finds a hint wrong (CorruptRecord) walks the segment from its
start instead. Each segment also keeps where its data ends and its last record's time: the stream's size
and the retention by age come from these.
"""

from __future__ import annotations

import bisect
import os
import struct
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from memento.log import Log
from memento.record import HEAD, TYPE_SEAL
from memento.segment import HEADER_SIZE

INDEX_DIR: Final = "index"
ENTRY: Final = struct.Struct("<QQQ")  # LSN, offset in the segment, append time (ms)
EVERY: Final = 16 << 10  # bytes of records between two entries at most
_TIME: Final = struct.Struct("<Q")  # the first field of a stream record's payload: its append time (ms)
_WINDOW: Final = 1 << 20


class SegmentIndex:
    """The entries of one segment, where its data ends and its last record's LSN and time."""

    __slots__ = ("base_lsn", "end", "last_lsn", "last_time", "lsns", "offsets", "pending", "seq", "times")

    def __init__(self, seq: int, base_lsn: int) -> None:
        self.seq = seq
        self.base_lsn = base_lsn
        self.lsns: array[int] = array("Q")
        self.offsets: array[int] = array("Q")
        self.times: array[int] = array("Q")
        self.end = HEADER_SIZE  # where the next record would start
        self.last_lsn = base_lsn - 1
        self.last_time = 0
        self.pending = bytearray()  # entries not yet written to the file

    def add(self, lsn: int, offset: int, size: int, timestamp: int) -> None:
        """A record of `size` bytes at `offset`."""
        if not self.lsns or offset - self.offsets[-1] >= EVERY:
            self.lsns.append(lsn)
            self.offsets.append(offset)
            self.times.append(timestamp)
            self.pending += ENTRY.pack(lsn, offset, timestamp)
        self.end = offset + size
        self.last_lsn = lsn
        if timestamp > self.last_time:
            self.last_time = timestamp


class StreamIndex:
    """The index of every segment of one stream's log (`load` it once the log is open)."""

    def __init__(self, log: Log, directory: Path) -> None:
        self.log = log
        self.directory = directory
        self.segments: list[SegmentIndex] = []
        self.bases: list[int] = []  # base LSN of each indexed segment (bisect)

    # -- opening ----------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the index files, keep what agrees with the log, walk what they do not cover."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        end_lsn = self.log.durable_lsn
        keep: set[str] = set()
        for info in self.log.segments:
            name = f"{info.seq:016x}.idx"
            keep.add(name)
            path = self.directory / name
            entries = _read_entries(path, info.base_lsn, end_lsn)
            # The last entry kept is walked again: the walk also finds where the data ends and the time
            # of the last record, and indexes what the file does not cover (the same entries it would).
            offset, lsn = (entries[-1][1], entries[-1][0]) if entries else (HEADER_SIZE, info.base_lsn)
            index = SegmentIndex(info.seq, info.base_lsn)
            for entry_lsn, entry_offset, timestamp in entries[:-1]:
                index.lsns.append(entry_lsn)
                index.offsets.append(entry_offset)
                index.times.append(timestamp)
            records = walk(info.path, offset, lsn, end_lsn)
            first = next(records, None)
            if first is None and entries:
                # The file's last entry does not point at its record: index the segment from its start.
                index = SegmentIndex(info.seq, info.base_lsn)
                records = walk(info.path, HEADER_SIZE, info.base_lsn, end_lsn)
                first = next(records, None)
            if first is not None:
                index.add(first[2], first[0], first[1], first[3])
            for record_offset, size, record_lsn, timestamp in records:
                index.add(record_lsn, record_offset, size, timestamp)
            index.pending.clear()
            entries_now = zip(index.lsns, index.offsets, index.times, strict=True)
            path.write_bytes(b"".join(ENTRY.pack(*entry) for entry in entries_now))
            self.segments.append(index)
            self.bases.append(info.base_lsn)
        for leftover in os.listdir(self.directory):
            if leftover not in keep:
                (self.directory / leftover).unlink(missing_ok=True)
        self.flush()

    # -- appending --------------------------------------------------------------------------------------

    def added(self, seq: int, offset: int, size: int, lsn: int, timestamp: int) -> bool:
        """A record was appended at (`seq`, `offset`); True when it opened a new segment."""
        segments = self.segments
        if segments and segments[-1].seq == seq:
            segments[-1].add(lsn, offset, size, timestamp)
            return False
        index = SegmentIndex(seq, lsn)
        index.add(lsn, offset, size, timestamp)
        segments.append(index)
        self.bases.append(lsn)
        return True

    def flush(self, least: int = 0) -> None:
        """Write the entries made since the last flush (no sync: the index is a hint); with `least`, only
        those of a segment with at least that many bytes of them or no longer written to (an entry not
        yet written only makes the next open walk a little more of the segment)."""
        last = self.segments[-1] if self.segments else None
        for index in self.segments:
            if index.pending and (len(index.pending) >= least or index is not last):
                with open(self.directory / f"{index.seq:016x}.idx", "ab") as out:
                    out.write(index.pending)
                index.pending.clear()

    def dropped(self, first_lsn: int) -> None:
        """The segments before the one starting at `first_lsn` were deleted (retention)."""
        while self.segments and self.segments[0].base_lsn < first_lsn:
            index = self.segments.pop(0)
            self.bases.pop(0)
            (self.directory / f"{index.seq:016x}.idx").unlink(missing_ok=True)

    # -- looking up -------------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes the segments' headers and records take."""
        return sum(index.end for index in self.segments)

    def position(self, lsn: int) -> tuple[int, int, int] | None:
        """(segment seq, offset, LSN) of the indexed record at or before `lsn` in `lsn`'s segment."""
        at = bisect.bisect_right(self.bases, lsn) - 1
        if at < 0:
            return None
        index = self.segments[at]
        entry = bisect.bisect_right(index.lsns, lsn) - 1
        if entry < 0:
            return None
        return index.seq, index.offsets[entry], index.lsns[entry]

    def time_position(self, timestamp: int) -> tuple[int, int, int] | None:
        """(segment seq, offset, LSN) of an indexed record from which the first record appended at or
        after `timestamp` is found by reading forward (None: no record is that recent)."""
        segments = self.segments
        low, high = 0, len(segments)
        while low < high:  # the first segment whose last record is at or after `timestamp`
            middle = (low + high) // 2
            if segments[middle].last_time < timestamp:
                low = middle + 1
            else:
                high = middle
        if low == len(segments):
            return None
        index = segments[low]
        if not index.lsns:
            return None
        entry = max(0, bisect.bisect_left(index.times, timestamp) - 1)
        return index.seq, index.offsets[entry], index.lsns[entry]


def _read_entries(path: Path, base_lsn: int, end_lsn: int) -> list[tuple[int, int, int]]:
    """The entries of an index file that agree with the log: in order, within the segment's LSNs."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries: list[tuple[int, int, int]] = []
    for at in range(0, len(data) - ENTRY.size + 1, ENTRY.size):
        lsn, offset, timestamp = ENTRY.unpack_from(data, at)
        if lsn > end_lsn or lsn < base_lsn or offset < HEADER_SIZE:
            break
        if entries and (lsn <= entries[-1][0] or offset <= entries[-1][1]):
            break
        entries.append((lsn, offset, timestamp))
    return entries


def walk(path: str, offset: int, lsn: int, upto_lsn: int) -> Iterator[tuple[int, int, int, int]]:
    """(offset, size, LSN, time) of each record of the segment file `path` from the record `lsn` at
    `offset` on, up to `upto_lsn`; stops at the end of data, a seal, or anything unexpected."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    head = HEAD.size + _TIME.size
    try:
        while lsn <= upto_lsn:
            window = os.pread(fd, _WINDOW, offset)
            at = 0
            while lsn <= upto_lsn and at + head <= len(window):
                length, _crc, rtype, _flags, _res, found, _when = HEAD.unpack_from(window, at)
                if length == 0 or rtype == TYPE_SEAL or found != lsn:
                    return
                size = 8 + length
                yield offset + at, size, lsn, _TIME.unpack_from(window, at + HEAD.size)[0]
                lsn += 1
                at += size
            if at == 0:
                return  # not even one record's head left in the file
            offset += at
    finally:
        os.close(fd)
