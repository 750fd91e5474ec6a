"""Reading records back from segment bytes: one record at an offset, all of a segment in order, or all
of a log's segments after an LSN (`Log.replay`).

Strategy: these loops run once per record on replay and on every read by position, so records are built
with tuple.__new__ (no Python-level constructor frame) and crc32c runs over memoryview slices. The record
layout (memento.record.Frame: header size, and the header reader that yields the time) is the segment's,
chosen once per segment by the caller; version-3 segments unpack their whole header in one C call.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import crc32c

from memento.errors import CorruptRecord
from memento.record import FRAME, TYPE_SEAL, Frame, Record, RecordPosition
from memento.segment import HEADER_SIZE
from memento.staging import staged_data

if TYPE_CHECKING:
    from memento.log import Log

_crc = crc32c.crc32c


def decode_at(data: bytes, at: int, seq: int, name: str, off: int, frame: Frame = FRAME) -> Record:
    """Decode and verify the record at data[at:], which sits at offset `off` of segment `seq` (`name`),
    whose records have the layout `frame`."""
    head_size = frame.head_size
    if len(data) - at < head_size:
        raise CorruptRecord(f"{name} offset {off}: no record there", segment=name, offset=off)
    length, stored, rtype, flags, _res, lsn, when = frame.unpack(data, at)
    end = at + 8 + length
    if length < frame.min_len or end > len(data) or _crc(memoryview(data)[at + 8 : end]) != stored:
        raise CorruptRecord(f"{name} offset {off}: no valid record there", segment=name, offset=off, lsn=lsn)
    return Record(lsn, rtype, flags, data[at + head_size : end], RecordPosition(seq, off), when)


def records_in(
    data: bytes | mmap.mmap, seq: int, base_lsn: int, name: str, after: int = 0, frame: Frame = FRAME
) -> Iterator[Record]:
    """Every record of segment `seq`'s bytes with LSN > `after`, in order; stops at the end of data or at
    the seal. `frame` is the segment's record layout (`frame_of(header version)`). Raises CorruptRecord
    where a record fails its checks."""
    view = memoryview(data)
    unpack = frame.unpack
    head_size = frame.head_size
    crc = _crc
    new = tuple.__new__
    size = len(data)
    pos = HEADER_SIZE
    expected = base_lsn
    try:
        while pos + head_size <= size:
            length, stored, rtype, flags, _res, lsn, when = unpack(data, pos)
            if length == 0:
                return
            end = pos + 8 + length
            if lsn != expected or end > size or crc(view[pos + 8 : end]) != stored:
                raise CorruptRecord(
                    f"{name} offset {pos} LSN {expected}: record damaged since open",
                    segment=name,
                    offset=pos,
                    lsn=expected,
                )
            if rtype == TYPE_SEAL:
                return
            if lsn > after:
                position = new(RecordPosition, (seq, pos))
                yield new(Record, (lsn, rtype, flags, data[pos + head_size : end], position, when))
            expected = lsn + 1
            pos = end
    finally:
        view.release()


def replay_records(log: Log, after_lsn: int | None) -> Iterator[Record]:
    """`Log.replay`'s work (see there)."""
    start = log.snapshot_lsn if after_lsn is None else after_lsn
    if staged_data(log):
        log.sync()
    segments = list(log._segments)
    for i, seg in enumerate(segments):
        if i + 1 < len(segments) and segments[i + 1].base_lsn <= start + 1:
            continue
        if seg is log._tail:
            if seg.fd < 0:
                continue  # not created yet (opened on a full disk): it holds no record
            tail = os.pread(seg.fd, log._tail_off, 0)
            yield from records_in(tail, seg.seq, seg.base_lsn, seg.name, start, seg.frame)
            continue
        with open(seg.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            limit = log._read_limits.get(seg.seq)
            if limit is not None:  # a dry run's cut: the bytes after it are still on disk
                yield from records_in(data[:limit], seg.seq, seg.base_lsn, seg.name, start, seg.frame)
                continue
            yield from records_in(data, seg.seq, seg.base_lsn, seg.name, start, seg.frame)
