"""Verifying one sealed segment while the log is in use: the engine's half of a background scrub.

Strategy: a sealed segment never changes once its seal is durable (appends go to the last segment,
compaction copies forward, deletion unlinks whole files), so another thread or process may check it with
plain reads and no help from the LOCK holder. `verify_sealed` reads the file in chunks with pread (no
mmap: a file cut short under a mapping kills the process with SIGBUS) and checks what recovery checks
(memento.scan): the header (magic, crc, seq and base LSN as the name says), then each record's length,
crc and LSN (contiguous from the base), down to the seal, whose LSN must be the next segment's base.
After each chunk it calls `pace(bytes)`, which the caller uses to bound its read rate and to stop early.

Damage does not end the check: the rest of the segment is searched for the next valid record with an LSN
that could follow (`scan.find_resync`, as recovery does), and verification goes on from there, so one
pass reports every damaged span of a segment, each as `[offset, end)` with the LSN expected at `offset`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from typing import Final

import crc32c

from memento.record import ENGINE_TYPES, TYPE_NONE, TYPE_SEAL, USER_TYPES, Frame, frame_of
from memento.scan import find_resync
from memento.segment import HEADER_SIZE, decode_header, parse_name

CHUNK: Final = 1 << 20  # bytes read at a time (and the unit `pace` is told about)
_U32: Final = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class DamagedSpan:
    """Bytes `[offset, end)` of a segment that hold no verifiable record; `lsn` is the LSN expected at
    `offset` (-1 when unknown)."""

    offset: int
    end: int
    lsn: int
    reason: str


@dataclass(slots=True)
class SegmentCheck:
    """What verifying one sealed segment found."""

    name: str
    records: int = 0
    bytes_read: int = 0
    damage: list[DamagedSpan] = field(default_factory=list)


def verify_sealed(
    path: str,
    *,
    next_lsn: int | None = None,
    registry: Set[int] | None = None,
    pace: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
) -> SegmentCheck:
    """Verify the sealed segment at `path` (header, every record's length, crc and LSN, the seal, whose
    LSN must be `next_lsn` when given). `pace(n)` is called after each `n` bytes read (it may sleep, or
    raise to stop). Raises OSError when the file cannot be opened or read (FileNotFoundError: deleted)."""
    name = os.path.basename(path)
    check = SegmentCheck(name)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        reader = _Reader(fd, size, chunk, check, pace)
        head = reader.read(0, HEADER_SIZE)
        header = decode_header(head)
        parsed = parse_name(name)
        if isinstance(header, str):
            check.damage.append(DamagedSpan(0, size, -1, f"segment header: {header}"))
            return check
        if parsed is not None and (header.seq, header.base_lsn) != parsed:
            check.damage.append(
                DamagedSpan(
                    0,
                    size,
                    header.base_lsn,
                    f"header says seq {header.seq} base LSN {header.base_lsn}; the name says "
                    f"seq {parsed[0]} base LSN {parsed[1]}",
                )
            )
            return check
        _walk(reader, header.base_lsn, next_lsn, registry, frame_of(header.version))
    finally:
        os.close(fd)
    return check


class _Reader:
    """Chunked preads of one file, each chunk reported to `pace`."""

    def __init__(
        self, fd: int, size: int, chunk: int, check: SegmentCheck, pace: Callable[[int], None] | None
    ) -> None:
        self.fd = fd
        self.size = size
        self.chunk = chunk
        self.check = check
        self.pace = pace

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset` (fewer at the end of the file)."""
        parts: list[bytes] = []
        while length > 0 and offset < self.size:
            piece = os.pread(self.fd, min(length, self.chunk), offset)
            if not piece:
                break
            parts.append(piece)
            offset += len(piece)
            length -= len(piece)
            self.check.bytes_read += len(piece)
            if self.pace is not None:
                self.pace(len(piece))
        return b"".join(parts)


def _walk(reader: _Reader, lsn: int, next_lsn: int | None, registry: Set[int] | None, frame: Frame) -> None:
    """Walk the records of a segment whose record layout is `frame`."""
    check = reader.check
    size = reader.size
    crc = crc32c.crc32c
    unpack = frame.unpack
    head_size = frame.head_size
    min_len = frame.min_len
    plain = (registry if registry is not None else USER_TYPES) - ENGINE_TYPES
    pos = HEADER_SIZE
    buf = b""  # file bytes from `start`
    start = pos
    while True:
        # The common case, in a tight loop: whole valid records of a known type inside `buf`. Anything
        # else (the buffer's end, the end of data, the seal, damage) is left to the careful code below.
        rel = pos - start
        limit = len(buf) - head_size
        view = memoryview(buf)
        count = 0
        while rel <= limit:
            length, stored, rtype, _flags, _reserved, rlsn, _time = unpack(buf, rel)
            end = rel + 8 + length
            if (
                length < min_len
                or end > len(buf)
                or rlsn != lsn
                or rtype not in plain
                or crc(view[rel + 8 : end]) != stored
            ):
                break
            lsn += 1
            count += 1
            rel = end
        view.release()
        check.records += count
        pos = start + rel
        if len(buf) - rel < head_size and start + len(buf) < size:
            buf = buf[rel:] + reader.read(start + len(buf), reader.chunk)
            start = pos
            rel = 0
        if len(buf) - rel < 8 or _U32.unpack_from(buf, rel)[0] == 0:
            check.damage.append(DamagedSpan(pos, size, lsn, "the segment ends without its seal"))
            return
        if len(buf) - rel < head_size:
            check.damage.append(DamagedSpan(pos, size, lsn, "record header cut by the end of the file"))
            return
        length, stored, rtype, _flags, _reserved, rlsn, _time = unpack(buf, rel)
        end = pos + 8 + length
        problem: str | None = None
        if length < min_len:
            problem = f"record length {length} is too small"
        elif end > size:
            problem = f"record length {length} runs past the end of the file"
        else:
            if len(buf) - rel < 8 + length:
                buf = buf[rel:] + reader.read(start + len(buf), end - (start + len(buf)))
                start = pos
                rel = 0
            if crc(memoryview(buf)[rel + 8 : rel + 8 + length]) != stored:
                problem = "record checksum mismatch"
            elif rlsn != lsn:
                problem = f"record has LSN {rlsn} where {lsn} was expected"
            elif rtype == TYPE_NONE:
                problem = "record of type 0"
            elif rtype != TYPE_SEAL and registry is not None and rtype not in registry:
                problem = f"unknown record type {rtype}"
        if problem is None:
            if rtype == TYPE_SEAL:
                if next_lsn is not None and rlsn != next_lsn:
                    problem = f"seal says LSN {rlsn}; the next segment starts at {next_lsn}"
                    check.damage.append(DamagedSpan(pos, end, lsn, problem))
                return
            check.records += 1
            lsn += 1
            pos = end
            continue
        # Damage: find where verifiable records start again, as recovery would, and go on from there.
        rest = reader.read(pos, size - pos)
        resync = find_resync(rest, 1, lsn, frame)
        if resync is None:
            check.damage.append(DamagedSpan(pos, size, lsn, problem))
            return
        check.damage.append(DamagedSpan(pos, pos + resync.offset, lsn, problem))
        pos += resync.offset
        lsn = resync.lsn
        buf = rest[resync.offset :]
        start = pos
