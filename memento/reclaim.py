"""Space reclamation: delete old segments nothing needs, and compact sparse ones by copying their live
records forward.

Strategy: a segment may go once the snapshot covers all its records (last LSN <= covered_lsn) and the
caller's `live(position)` says none of them is still needed (e.g. no message body it indexes lives there).
Only the oldest segments are deleted (a prefix), so the segment set stays contiguous. A sparse covered
segment (live bytes <= `sparse` of its bytes) has its live records appended again at the head of the log
(new LSNs, FLAG_RELOCATED set) and the caller gets old -> new positions to update its index; the segment
itself is deleted by a later call, once the caller no longer calls those records live and a snapshot taken
after the copies covers them (covered_lsn >= the last copy's LSN).

Memory and time: planning reads only record headers, through one reusable 1 MiB window (no mmap: touched
file pages would count in the RSS), and keeps only the offsets and sizes of live records, so a fully live
64 MiB segment costs a few hundred KiB, not its bytes plus a copy of every payload. A scan stops as soon as
its answer is known (a live record in a segment that cannot be compacted; more live bytes than a sparse
segment may hold). Payloads are read, and their crc checked, only for the records actually copied. The
planning calls no Log method, so AsyncWriter runs it in a worker thread.

Crash safety (FORMAT.md, "Reclamation order"): copies are written and fdatasynced before any deletion;
a segment compacted in one call is never deleted in the same call. A crash anywhere leaves the original
and maybe its copy: duplicates, never loss.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from memento.errors import CorruptRecord
from memento.log import Log
from memento.reader import decode_at
from memento.record import (
    FLAG_ORIGIN,
    FLAG_RELOCATED,
    LEGACY_HEAD,
    ORIGIN,
    TYPE_SEAL,
    Record,
    RecordPosition,
)
from memento.segment import HEADER_SIZE
from memento.staging import _Segment


@dataclass(frozen=True, slots=True)
class ReclaimResult:
    """What a reclaim did: deleted segment files, old -> new positions of copied records, bytes freed."""

    deleted: tuple[str, ...]
    relocated: dict[RecordPosition, RecordPosition]
    freed_bytes: int


MAX_COPY_BYTES = 64 << 20  # copies planned per call at most: bounds memory and the call's duration
WINDOW = 1 << 20  # bytes read at a time while scanning headers
READ_BATCH = 4 << 20  # bytes of records to copy read back at a time


@dataclass(slots=True)
class LiveSpans:
    """The live records of one segment to copy forward: offsets and record sizes, in file order."""

    seg: _Segment
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("I"))


@dataclass(slots=True)
class ReclaimPlan:
    """Which covered segments to delete and which live records to copy forward (built by `plan`).

    `first_seq` and `relocated` are taken from the log when the plan starts, so that planning reads
    nothing the event loop changes and may run in a worker thread."""

    covered_lsn: int
    sparse: float
    first_seq: int
    relocated: dict[int, int]
    delete: list[_Segment] = field(default_factory=list)
    copy: list[LiveSpans] = field(default_factory=list)
    copy_bytes: int = 0
    prefix: bool = True  # every segment considered so far is deleted
    # Segments recovery found damaged and salvage kept in place (recovery_report.damaged): their damage is
    # known, so it keeps them (and every later segment) rather than failing the whole reclaim.
    damaged: frozenset[int] = frozenset()


def check_covered(log: Log, covered_lsn: int) -> None:
    """Refuse a covered_lsn that no snapshot covers: deleting below it would lose records."""
    if covered_lsn > log.snapshot_lsn:
        raise ValueError(f"covered_lsn {covered_lsn} is beyond the newest snapshot (LSN {log.snapshot_lsn})")


def new_plan(log: Log, covered_lsn: int, sparse: float) -> tuple[ReclaimPlan, list[_Segment]]:
    """An empty plan and the sealed segments wholly covered by `covered_lsn`, oldest first (on the loop)."""
    check_covered(log, covered_lsn)
    todo = ReclaimPlan(
        covered_lsn,
        sparse,
        log._segments[0].seq,
        dict(log.relocated_through),
        damaged=frozenset(log.recovery_report.damaged),
    )
    return todo, [seg for seg, last in sealed_segments(log) if last <= covered_lsn]


def plan(todo: ReclaimPlan, segments: list[_Segment], live: Callable[[RecordPosition], bool]) -> None:
    """Consider each candidate in order, oldest first; file reads and `live` calls only (thread-safe
    as far as `live` is)."""
    for seg in segments:
        consider(todo, seg, live)


def consider(todo: ReclaimPlan, seg: _Segment, live: Callable[[RecordPosition], bool]) -> None:
    """Add one candidate to the plan: deleted if it extends the dead prefix, compacted if sparse."""
    copied_ok = todo.relocated.get(seg.seq, 0) <= todo.covered_lsn
    may_delete = todo.prefix and copied_ok and (bool(todo.delete) or seg.seq == todo.first_seq)
    may_copy = seg.seq not in todo.relocated and todo.copy_bytes < MAX_COPY_BYTES
    if not may_delete and not may_copy:
        todo.prefix = False
        return
    spans = LiveSpans(seg)
    # Over this many live bytes the segment is not sparse whatever its total (records fit in the file).
    limit = int(todo.sparse * os.path.getsize(seg.path)) if may_copy else -1
    try:
        total, live_bytes, complete = scan(seg, live, limit, spans)
    except CorruptRecord:
        if seg.seq not in todo.damaged:
            raise
        todo.prefix = False
        return
    if may_delete and complete and live_bytes == 0:
        todo.delete.append(seg)
        return
    todo.prefix = False
    if may_copy and complete and live_bytes and live_bytes <= todo.sparse * total:
        todo.copy.append(spans)
        todo.copy_bytes += live_bytes


def scan(
    seg: _Segment, live: Callable[[RecordPosition], bool], limit: int, spans: LiveSpans
) -> tuple[int, int, bool]:
    """Walk the record headers of a sealed segment, asking `live` about each record in order; note live
    records in `spans`. Stops early once live bytes exceed `limit`. (record bytes, live bytes, complete).

    Only lengths and LSNs are checked here (a crc needs the payload); copied records are verified when
    read back, and a deleted segment's bytes are never needed again.
    """
    unpack = LEGACY_HEAD.unpack_from  # the fields every format version has, at the same offsets
    head_size = seg.frame.head_size
    min_len = seg.frame.min_len
    new = tuple.__new__
    seq = seg.seq
    offsets = spans.offsets
    sizes = spans.sizes
    total = live_bytes = 0
    expected = seg.base_lsn
    fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        pos = HEADER_SIZE
        while pos + head_size <= size:
            window = os.pread(fd, WINDOW, pos)
            base = pos
            rel = 0
            end = len(window) - head_size
            while rel <= end:
                length, _crc, rtype, _flags, _res, lsn = unpack(window, rel)
                if length == 0:
                    return total, live_bytes, True
                record = 8 + length
                at = base + rel
                if lsn != expected or length < min_len or at + record > size:
                    raise CorruptRecord(
                        f"{seg.name} offset {at} LSN {expected}: record damaged since open",
                        segment=seg.name,
                        offset=at,
                        lsn=expected,
                    )
                if rtype == TYPE_SEAL:
                    return total, live_bytes, True
                total += record
                if live(new(RecordPosition, (seq, at))):
                    live_bytes += record
                    if live_bytes > limit:
                        return total, live_bytes, False
                    offsets.append(at)
                    sizes.append(record)
                expected = lsn + 1
                rel += record
            pos = base + rel
    finally:
        os.close(fd)
    return total, live_bytes, True


def batches(spans: LiveSpans, budget: int = READ_BATCH) -> Iterator[tuple[int, int]]:
    """Index ranges [start, stop) of `spans` holding about `budget` bytes each (at least one record)."""
    start = taken = 0
    sizes = spans.sizes
    for i, size in enumerate(sizes):
        if taken and taken + size > budget:
            yield start, i
            start, taken = i, 0
        taken += size
    if start < len(sizes):
        yield start, len(sizes)


def read_live(spans: LiveSpans, start: int, stop: int) -> list[Record]:
    """Records start..stop-1 of `spans`, read back and verified (file reads only: safe in a thread)."""
    seg = spans.seg
    offsets = spans.offsets
    sizes = spans.sizes
    fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return [
            decode_at(os.pread(fd, sizes[i], offsets[i]), 0, seg.seq, seg.name, offsets[i], seg.frame)
            for i in range(start, stop)
        ]
    finally:
        os.close(fd)


def copy_records(
    log: Log, seg: _Segment, records: list[Record], moved: dict[RecordPosition, RecordPosition]
) -> None:
    """Append copies of some of one segment's live records, in order (staged only: the caller makes
    them durable before any deletion), and note old -> new positions in `moved`."""
    last = 0
    for record in records:
        last = relocate(log, record)
        moved[record.position] = log.last_position
    if last:
        log.relocated_through[seg.seq] = last


def delete(log: Log, todo: ReclaimPlan, sync_dir: bool = True) -> tuple[tuple[str, ...], int]:
    """Delete the planned segments and (unless told not to) sync the directory; (names, bytes freed)."""
    names = []
    freed = 0
    for seg in todo.delete:
        freed += os.path.getsize(seg.path)
        names.append(seg.name)
        drop_segment(log, seg)
        log.relocated_through.pop(seg.seq, None)
    if names and sync_dir:
        log.disk.fsync_dir(log.wal_dir)
    return tuple(names), freed


def reclaim(
    log: Log, covered_lsn: int, live: Callable[[RecordPosition], bool], sparse: float = 0.5
) -> ReclaimResult:
    """Reclaim space synchronously: plan, copy live records of sparse segments, sync, delete.

    `covered_lsn` must be the LSN of the OLDEST snapshot kept (the store keeps a fallback), so that
    recovery from either snapshot still finds every record it needs.
    """
    todo, segments = new_plan(log, covered_lsn, sparse)
    plan(todo, segments, live)
    moved: dict[RecordPosition, RecordPosition] = {}
    for spans in todo.copy:
        for start, stop in batches(spans):
            copy_records(log, spans.seg, read_live(spans, start, stop), moved)
            log.sync()  # written now, so staged copies never hold more than a batch
    names, freed = delete(log, todo)
    return ReclaimResult(names, moved, freed)


def delete_oldest(log: Log, through_lsn: int) -> tuple[tuple[str, ...], int]:
    """Delete the oldest sealed segments whose records all have LSNs <= `through_lsn`, without reading
    them (a caller to whom nothing in them is live: a stream's retention); (names, bytes freed). The
    snapshot must cover `through_lsn` (recovery then starts at the first segment kept). On the log's
    owner thread; an AsyncWriter may run."""
    check_covered(log, through_lsn)
    todo = ReclaimPlan(through_lsn, 0.0, log._segments[0].seq if log._segments else 0, {})
    for seg, last in sealed_segments(log):  # oldest first: the deleted ones stay a prefix
        if last > through_lsn:
            break
        todo.delete.append(seg)
    return delete(log, todo)


# -- what reclaiming needs of the Log (its own state, touched only here) -----------------------------------


def relocate(log: Log, record: Record) -> int:
    """Append a copy of `record` (same type and flags plus FLAG_RELOCATED | FLAG_ORIGIN, the payload
    after the original's LSN); its new LSN. A copy of a copy keeps the first original's LSN. The copy
    keeps the original's time too: it says when the record was written, which compaction does not
    change (0, unknown, for an original older than format version 3)."""
    if log._error is not None:
        raise log._error
    flags = record.flags
    if flags & FLAG_RELOCATED:  # already a copy: its origin (or a version-1 copy's lack of one) stays
        return log._append(record.type, flags, record.payload, record.time)
    return log._append(
        record.type,
        flags | FLAG_RELOCATED | FLAG_ORIGIN,
        ORIGIN.pack(record.lsn) + record.payload,
        record.time,
    )


def sealed_segments(log: Log) -> list[tuple[_Segment, int]]:
    """Segments whose seal is durable (the next one starts at or below durable_lsn), with the last
    LSN each holds."""
    segs = log._segments
    return [
        (segs[i], segs[i + 1].base_lsn - 1)
        for i in range(len(segs) - 1)
        if segs[i + 1].base_lsn <= log._durable_lsn
    ]


def drop_segment(log: Log, seg: _Segment) -> None:
    """Forget and delete a segment file (the caller syncs the directory)."""
    if seg.fd >= 0:
        os.close(seg.fd)
        seg.fd = -1
    log._close_read_fd(seg.seq)
    os.unlink(seg.path)
    log._segments.remove(seg)
    del log._by_seq[seg.seq]
