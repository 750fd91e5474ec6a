"""The log: a directory of segments, opened with recovery, appended to, read by position, replayed.

Strategy: appends only encode into in-memory chunks (one per target segment) and return the LSN at once;
the position of every record is known at append time because the tail offset and any rollover are planned
in memory. A flush (`sync`, or the AsyncWriter's background thread) takes all staged chunks as one batch and
does the I/O: create the next segment if a rollover was planned, one pwrite per chunk, fdatasync. Only the
flush touches segment files for writing, so the event loop can keep appending while a flush runs; the
batch being flushed stays readable from memory until it is done. `sync` treats any I/O error as final;
the AsyncWriter retries a batch that met a full disk (see memento.writer).

This module holds the append and read paths. Opening and recovery are in memento.opening, the staging
types and the flush in memento.staging, replay in memento.reader, what compaction needs of the log in
memento.reclaim.

Every record carries the wall-clock time of its append (format version 3), from the log's `clock`, which
callers may replace (a fixed clock makes a log's bytes reproducible). Segments written by older versions
keep their record layout (memento.record.Frame, one per segment); reads follow each segment's.

Directory layout: LOCK, wal/*.wal, snapshots/ (LMDB, memento.snapshot), quarantine/ (damaged bytes).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import crc32c

from memento.disk import DiskIO
from memento.errors import CorruptRecord, LogClosed, LogFailed
from memento.identity import MarkFile
from memento.opening import LOCK_FILE as LOCK_FILE
from memento.opening import QUARANTINE_DIR as QUARANTINE_DIR
from memento.opening import SNAPSHOT_DIR as SNAPSHOT_DIR
from memento.opening import WAL_DIR as WAL_DIR
from memento.opening import open_log
from memento.reader import decode_at, replay_records
from memento.record import (
    BODY_HEAD,
    BODY_HEAD_SIZE,
    ENGINE_TYPES,
    FRAME,
    HEAD,
    HEAD_SIZE,
    PREFIX,
    SEAL_SIZE,
    TYPE_SEAL,
    USER_FLAGS_MASK,
    USER_TYPES,
    Frame,
    Record,
    RecordPosition,
)
from memento.recovery import BadRecord, RecoveryReport
from memento.segment import DEFAULT_SEGMENT_SIZE, HEADER_SIZE, SUFFIX
from memento.snapshot import Snapshot, SnapshotStore
from memento.spare import SPARE_DIR, SparePreparer
from memento.staging import (
    _Batch,
    _Chunk,
    _Segment,
    batch_done,
    fail,
    next_segment_size,
    staged_data,
    take_batch,
    write_batch,
)

if TYPE_CHECKING:
    from memento.reclaim import ReclaimResult

_READ_AHEAD: Final = 4096
# Reads that walk forward through a segment (a queue's backlog being delivered) switch to one pread of
# this size, and serve the following records from it.
_WINDOW: Final = 256 * 1024
# Read-only descriptors kept open on sealed segments (least recently read closed first).
_READ_FDS: Final = 8
_crc = crc32c.crc32c
_new_tuple: Final = tuple.__new__
_pack_prefix = PREFIX.pack
_pack_body_head = BODY_HEAD.pack
_unpack_head = HEAD.unpack_from

# (type, flags, LSN, payload, segment seq, offset) of a record a follower staged.
ReplicaRecord = tuple[int, int, int, memoryview, int, int]
_time_ns = time.time_ns


def wall_clock() -> int:
    """Microseconds since the Unix epoch now: the default clock that stamps appended records."""
    return _time_ns() // 1000


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A segment as `Log.segments` lists it."""

    seq: int
    base_lsn: int
    path: str
    size: int


class Log:
    """A Memento log directory, open for appending. Create with `Log.open`; not thread-safe (one owner,
    plus at most one AsyncWriter, which takes over flushing)."""

    def __init__(
        self,
        path: Path,
        *,
        segment_size: int,
        registry: frozenset[int] | None,
        disk: DiskIO,
        lock_fd: int,
        store: SnapshotStore,
        snapshot: Snapshot | None,
        clock: Callable[[], int] = wall_clock,
    ) -> None:
        self.path = path
        self.wal_dir = str(path / WAL_DIR)
        self.segment_size = segment_size
        self.registry = registry
        self.disk = disk
        self.snapshots = store
        self.snapshot = snapshot
        self.snapshot_lsn = snapshot.lsn if snapshot is not None else 0
        self.recovery_report = RecoveryReport()
        self.clock = clock  # wall-clock microseconds since the epoch, stamped on every record appended
        self._lock_fd = lock_fd
        self._allowed = (registry - ENGINE_TYPES) & USER_TYPES if registry is not None else USER_TYPES
        self._segments: list[_Segment] = []
        self._by_seq: dict[int, _Segment] = {}
        self._tail: _Segment | None = None
        self._tail_off = HEADER_SIZE
        self._tail_limit = 0
        self._last_off = -1
        self._next_lsn = 1
        self._durable_lsn = 0
        self._staged: list[_Chunk] = []
        self._chunk: _Chunk | None = None
        self._inflight: _Batch | None = None
        # The batch before `_inflight` when the writer thread took the next one before the owner heard
        # that it is durable: its records stay readable from memory until then (`batch_done`), so a
        # replication cursor that is a batch behind does not fall back to the files.
        self._written: _Batch | None = None
        # Appends (owner thread) and batch taking (possibly the AsyncWriter's thread) share the staging
        # area: this lock covers it. `_idle_waiter` wakes the writer thread while it waits for work (the
        # next append calls it once, outside the lock).
        self._lock = threading.Lock()
        self._idle_waiter: Callable[[], object] | None = None
        self._spares = SparePreparer(str(path / SPARE_DIR), disk)
        self._error: LogFailed | None = None
        self._no_room: OSError | None = None  # why open could not create the tail segment
        self._closed = False
        # The last window read (segment seq, offset, bytes, its records' layout) and where the last single
        # read was.
        self._window: tuple[int, int, bytes, Frame] = (-1, 0, b"", FRAME)
        # Read-only descriptors on sealed segments, least recently read first (`_read_fd`).
        self._read_fds: OrderedDict[int, int] = OrderedDict()
        self._last_read = (-1, 0)
        # seq -> offset where replay stops in that segment (a dry run's cut, not applied on disk)
        self._read_limits: dict[int, int] = {}
        # seq -> last LSN copied out of that segment by compaction (see memento.reclaim)
        self.relocated_through: dict[int, int] = {}
        self.log_id = bytes(16)  # set by recovery (memento.identity)
        self._mark: MarkFile | None = None
        self._newest = (0, 0)  # (seq, base LSN) of the newest segment created, as MARK says

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        salvage: bool = False,
        registry: Iterable[int] | None = None,
        disk: DiskIO | None = None,
        full_check: bool = False,
        log_id: bytes | None = None,
        dry_run: bool = False,
        bad_record: BadRecord | None = None,
        clock: Callable[[], int] = wall_clock,
    ) -> Log:
        """Open (creating if needed) the log at `path`: lock it, load the newest snapshot, recover.

        `registry` lists the record types callers use (None accepts all); a record of another type found
        on open raises UnsupportedVersion. A torn tail is quarantined and truncated (see
        `recovery_report`); other damage raises RecoveryRefused, unless `salvage` keeps what is valid up to
        it. Segments wholly covered by the snapshot are only header-checked unless `full_check` (or
        `salvage`). `log_id` (16 bytes) is the id a log created now gets, instead of a random one
        (fixtures); an existing log keeps its own (`log.log_id`). `bad_record` (with salvage) cuts the log
        at a record the caller cannot apply; `dry_run` (with salvage) plans the salvage without changing
        anything and opens read-only (`recovery_report.plan` says what salvage would drop).
        `clock` gives the wall-clock time in microseconds since the epoch that each append records (and
        that open compares the newest record's time with: a warning when the clock moved back).
        """
        return open_log(
            cls,
            path,
            segment_size=segment_size,
            salvage=salvage,
            registry=registry,
            disk=disk,
            full_check=full_check,
            log_id=log_id,
            dry_run=dry_run,
            bad_record=bad_record,
            clock=clock,
        )

    def _set_tail(self, seg: _Segment, offset: int) -> None:
        self._tail = seg
        self._tail_off = offset
        self._tail_limit = seg.size - SEAL_SIZE

    # -- state ---------------------------------------------------------------------------------------

    @property
    def end_lsn(self) -> int:
        """LSN of the last record appended (durable or not); snapshot/previous end when none."""
        return self._next_lsn - 1

    @property
    def durable_lsn(self) -> int:
        """Every record up to this LSN is on disk (fdatasynced)."""
        return self._durable_lsn

    @property
    def failed(self) -> LogFailed | None:
        """The failure that stopped the log, or None while it works."""
        return self._error

    @property
    def waiting_for_space(self) -> OSError | None:
        """The full-disk error that kept `open` from creating the tail segment while it is still not
        created (the next flush creates it), else None."""
        tail = self._tail
        return self._no_room if tail is not None and tail.fd < 0 else None

    @property
    def last_position(self) -> RecordPosition:
        """Position of the record most recently appended (valid right after `append`)."""
        if self._last_off < 0 or self._tail is None:
            raise ValueError("nothing appended since open")
        # (tuple.__new__: a NamedTuple's own __new__ is a Python call, twice as slow; once per record
        # appended to a stream)
        return _new_tuple(RecordPosition, (self._tail.seq, self._last_off))

    @property
    def segments(self) -> list[SegmentInfo]:
        """The segments, oldest first (including one planned by a rollover but not yet flushed)."""
        return [SegmentInfo(s.seq, s.base_lsn, s.path, s.size) for s in self._segments]

    # -- appending -----------------------------------------------------------------------------------

    def append(self, rtype: int, payload: bytes | bytearray | memoryview, flags: int = 0) -> int:
        """Stage one record and return its LSN; it is durable after the next `sync` (or AsyncWriter batch).

        `rtype` is a caller type (1..0xEF, and in the registry when one was given); `flags` uses bits
        0x01..0x40.
        """
        if self._error is not None:
            raise self._error
        if rtype not in self._allowed or flags & ~USER_FLAGS_MASK:
            raise ValueError(f"record type {rtype} / flags {flags:#x} not allowed (see memento/FORMAT.md)")
        return self._append(rtype, flags, payload, self.clock())

    def append_replica(
        self, lsn: int, rtype: int, flags: int, payload: bytes | bytearray | memoryview, when: int
    ) -> int:
        """Stage a record exactly as another log (a replication leader) wrote it: same LSN, type, flags
        (engine flags included: a compaction copy stays one), payload and time. `lsn` must be the next
        LSN of this log (`end_lsn + 1`), anything else raises ValueError (a gap, or a record already
        held); a seal is never a record. Durable after the next flush, as `append`."""
        if self._error is not None:
            raise self._error
        if lsn != self._next_lsn:
            raise ValueError(
                f"replicated LSN {lsn} does not follow this log's end (next is {self._next_lsn})"
            )
        if rtype not in self._allowed:
            raise ValueError(f"record type {rtype} not allowed (see memento/FORMAT.md)")
        return self._append(rtype, flags, payload, when)

    def append_replica_wire(
        self, data: memoryview, at: int
    ) -> tuple[int, int, int, int, memoryview, int, int]:
        """`append_replica` of the record at `data[at:]` in the version-3 layout (what a leader's
        `memento.replica.Cursor` yields), checked and staged as those very bytes, which are what
        `append_replica` would write for it: (where the record ends in `data`, type, flags, LSN, payload,
        and the segment and offset where it was staged here). Raises CorruptRecord (nothing staged) when
        it is cut short, its crc does not match or its reserved field is not zero, ValueError as
        `append_replica`. A follower's per-record path: one call instead of a decode, a re-encode with
        two crcs, and a position object."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise LogClosed(f"{self.path}: log is closed")
        if len(data) - at < HEAD_SIZE:
            raise CorruptRecord(f"replicated record at {at}: cut short", offset=at)
        length, stored, rtype, flags, reserved, lsn, _when = _unpack_head(data, at)
        end = at + 8 + length
        if length < BODY_HEAD_SIZE or end > len(data) or _crc(data[at + 8 : end]) != stored or reserved:
            raise CorruptRecord(
                f"replicated record at {at} (LSN {lsn}): checksum mismatch", offset=at, lsn=lsn
            )
        if lsn != self._next_lsn:
            raise ValueError(
                f"replicated LSN {lsn} does not follow this log's end (next is {self._next_lsn})"
            )
        if rtype not in self._allowed:
            raise ValueError(f"record type {rtype} not allowed (see memento/FORMAT.md)")
        size = end - at
        # What `_append` does, with the record's bytes as they are.
        with self._lock:
            off = self._tail_off
            if off + size > self._tail_limit:
                self._roll(size)
                off = self._tail_off
            chunk = self._chunk
            if chunk is None:
                chunk = self._new_chunk(False)
            chunk.data += data[at:end]
            self._next_lsn = lsn + 1
            self._last_off = off
            self._tail_off = off + size
            waiter = self._idle_waiter
            self._idle_waiter = None
            tail = self._tail
            assert tail is not None
        if waiter is not None:
            waiter()
        return end, rtype, flags, lsn, data[at + HEAD_SIZE : end], tail.seq, off

    def append_replica_frame(self, data: memoryview, at: int) -> tuple[list[ReplicaRecord], Exception | None]:
        """`append_replica_wire` of every record in `data[at:]` (a RECORDS frame's records): (type, flags,
        LSN, payload, segment, offset) of each record staged, in order, and the error that stopped it
        (None: all were staged). When all are sound and fit the tail segment they are staged with one copy
        under one lock; otherwise record by record: the records before a damaged or misplaced one are
        staged and listed, and what `append_replica_wire` raised for it is the error (the caller applies
        what was staged, then raises it)."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise LogClosed(f"{self.path}: log is closed")
        found: list[tuple[int, int, int, int, int]] = []
        allowed = self._allowed
        expected = self._next_lsn
        end = len(data)
        pos = at
        while pos < end:
            if end - pos < HEAD_SIZE:
                return self._append_replica_each(data, at)
            length, stored, rtype, flags, reserved, lsn, _when = _unpack_head(data, pos)
            after = pos + 8 + length
            if (
                length < BODY_HEAD_SIZE
                or after > end
                or reserved
                or lsn != expected
                or rtype not in allowed
                or _crc(data[pos + 8 : after]) != stored
            ):
                return self._append_replica_each(data, at)
            found.append((rtype, flags, lsn, pos, after))
            expected += 1
            pos = after
        if not found:
            return [], None
        size = pos - at
        with self._lock:
            off = self._tail_off
            fits = off + size <= self._tail_limit  # else a rollover on the way: record by record
            if fits:
                chunk = self._chunk
                if chunk is None:
                    chunk = self._new_chunk(False)
                chunk.data += data[at:pos]
                self._next_lsn = expected
                self._last_off = off + found[-1][3] - at
                self._tail_off = off + size
                waiter = self._idle_waiter
                self._idle_waiter = None
                tail = self._tail
                assert tail is not None
                seq = tail.seq
        if not fits:
            return self._append_replica_each(data, at)
        if waiter is not None:
            waiter()
        base = off - at
        records = [
            (rtype, flags, lsn, data[start + HEAD_SIZE : after], seq, base + start)
            for rtype, flags, lsn, start, after in found
        ]
        return records, None

    def _append_replica_each(self, data: memoryview, at: int) -> tuple[list[ReplicaRecord], Exception | None]:
        records: list[ReplicaRecord] = []
        try:
            while at < len(data):
                at, rtype, flags, lsn, payload, seq, off = self.append_replica_wire(data, at)
                records.append((rtype, flags, lsn, payload, seq, off))
        except Exception as exc:  # whatever stopped it, the records before it are staged
            return records, exc
        return records, None

    def truncate_after(self, lsn: int) -> None:
        """Drop every record after `lsn` (a returning old leader drops what was never replicated): the
        later segments and the bytes after the cut go to quarantine/, the cut segment becomes the tail,
        MARK names it. Nothing may be staged and no AsyncWriter may run; `lsn` may not be below the
        snapshot's LSN (ValueError). Crash-safe: a crash leaves the log before or after the cut, or the
        cut segment sealed with its successor gone (open then continues after its records, and a second
        call finishes the cut). See FORMAT.md, "Replication"."""
        from memento.replica import truncate_after

        truncate_after(self, lsn)

    def _append(self, rtype: int, flags: int, payload: bytes | bytearray | memoryview, when: int) -> int:
        """Stage a record appended at wall-clock time `when` (microseconds since the epoch)."""
        if self._closed:
            raise LogClosed(f"{self.path}: log is closed")
        size = HEAD_SIZE + len(payload)
        with self._lock:
            off = self._tail_off
            if off + size > self._tail_limit:
                self._roll(size)
                off = self._tail_off
            chunk = self._chunk
            if chunk is None:
                chunk = self._new_chunk(False)
            lsn = self._next_lsn
            body_head = _pack_body_head(rtype, flags, 0, lsn, when)
            buf = chunk.data
            buf += _pack_prefix(size - 8, _crc(payload, _crc(body_head)))
            buf += body_head
            buf += payload
            self._next_lsn = lsn + 1
            self._last_off = off
            self._tail_off = off + size
            waiter = self._idle_waiter
            self._idle_waiter = None
        if waiter is not None:
            waiter()
        return lsn

    def _new_chunk(self, create: bool) -> _Chunk:
        assert self._tail is not None
        chunk = _Chunk(self._tail, self._tail_off, create)
        self._staged.append(chunk)
        self._chunk = chunk
        return chunk

    def _roll(self, size: int) -> None:
        """Plan a rollover: seal the tail segment in memory, stage the creation of the next one."""
        tail = self._tail
        assert tail is not None
        chunk = self._chunk or self._new_chunk(False)
        body_head = _pack_body_head(TYPE_SEAL, 0, 0, self._next_lsn, self.clock())
        chunk.data += _pack_prefix(len(body_head), _crc(body_head)) + body_head
        chunk.seal = True
        seg_size = max(next_segment_size(self), HEADER_SIZE + size + SEAL_SIZE)
        seq = tail.seq + 1
        path = os.path.join(self.wal_dir, f"{seq:016x}-{self._next_lsn:016x}{SUFFIX}")
        seg = _Segment(seq, self._next_lsn, seg_size, path)
        self._segments.append(seg)
        self._by_seq[seq] = seg
        self._set_tail(seg, HEADER_SIZE)
        self._new_chunk(True)

    # -- flushing (memento.staging; the AsyncWriter runs write_batch in its thread) --------------------

    def sync(self) -> None:
        """Write and fdatasync everything appended so far. Raises LogFailed if the disk fails."""
        if self._error is not None:
            raise self._error
        batch = take_batch(self)
        if batch is None:
            return
        try:
            write_batch(self, batch)
        except OSError as exc:
            raise fail(self, exc) from exc
        batch_done(self, batch)

    # -- reading -------------------------------------------------------------------------------------

    def read(self, position: RecordPosition) -> Record:
        """The record at `position` (one or two preads, or from memory if not yet written).

        Reads that move forward through one segment are served from a window of `_WINDOW` bytes read
        with one pread. A record found whole in the window, with its checksum right, is the record:
        records are never changed in place. Anything else there (zeros or a partial record past what
        was written when the window was read) is read again the plain way.
        """
        seq, off = position
        w_seq, w_off, w_data, w_frame = self._window
        head_size = w_frame.head_size
        if w_seq == seq and w_off <= off < w_off + len(w_data) - head_size:
            at = off - w_off
            length, stored, rtype, flags, _res, lsn, when = w_frame.unpack(w_data, at)
            end = at + 8 + length
            if (
                length >= w_frame.min_len
                and end <= len(w_data)
                and _crc(memoryview(w_data)[at + 8 : end]) == stored
            ):
                return Record(lsn, rtype, flags, w_data[at + head_size : end], position, when)
        seg = self._by_seq.get(seq)
        if seg is None:
            # A position into a segment the log no longer has (lost, or dropped by salvage): damage as
            # seen by a reader, not a programming error.
            raise CorruptRecord(f"no segment {seq} in {self.wal_dir}", offset=off)
        if self._inflight is not None or self._staged:
            found = self._read_staged(seg, off)
            if found is not None:
                return found
        fd = seg.fd
        if fd < 0:
            fd = self._read_fd(seg)
        last_seq, last_off = self._last_read
        self._last_read = (seq, off)
        if last_seq == seq and 0 < off - last_off < _WINDOW:
            data = _pread_whole(fd, _WINDOW, off)
            if len(data) <= _WINDOW:  # a longer one is a single record: nothing more to serve from it
                self._window = (seq, off, data, seg.frame)
        else:
            data = _pread_whole(fd, _READ_AHEAD, off)
        return decode_at(data, 0, seg.seq, seg.name, off, seg.frame)

    def _read_fd(self, seg: _Segment) -> int:
        """A read-only descriptor on a segment that has no open one of its own (sealed), from a small LRU:
        readers touch few segments at a time, and a descriptor per segment ever read would run a broker
        with many segments out of descriptors (the log needs some to create its next segment)."""
        fds = self._read_fds
        fd = fds.get(seg.seq)
        if fd is not None:
            fds.move_to_end(seg.seq)
            return fd
        fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
        fds[seg.seq] = fd
        if len(fds) > _READ_FDS:
            os.close(fds.popitem(last=False)[1])
        return fd

    def _close_read_fd(self, seq: int) -> None:
        fd = self._read_fds.pop(seq, None)
        if fd is not None:
            os.close(fd)

    def _read_staged(self, seg: _Segment, off: int) -> Record | None:
        with self._lock:
            chunks = list(self._inflight.chunks) if self._inflight is not None else []
            chunks.extend(self._staged)
        for chunk in chunks:
            if chunk.segment is seg and chunk.offset <= off < chunk.offset + len(chunk.data):
                rel = off - chunk.offset
                total = 8 + PREFIX.unpack_from(chunk.data, rel)[0]
                return decode_at(bytes(chunk.data[rel : rel + total]), 0, seg.seq, seg.name, off, seg.frame)
        return None

    def replay(self, after_lsn: int | None = None) -> Iterator[Record]:
        """Records with LSN > `after_lsn` (default: the snapshot's LSN), in order; seals are not
        records. Flushes staged appends first, so not while an AsyncWriter runs (replay before starting
        one). Raises CorruptRecord on damage found on the way."""
        return replay_records(self, after_lsn)

    # -- snapshots, space ----------------------------------------------------------------------------

    def save_snapshot(self, lsn: int, state: bytes) -> None:
        """Save the projection at `lsn` (which must be durable) in the snapshot store."""
        if lsn > self._durable_lsn:
            raise ValueError(f"snapshot LSN {lsn} is beyond the durable LSN {self._durable_lsn}")
        self.snapshots.save(lsn, state)
        self.snapshot_lsn = lsn

    def reclaim(
        self, covered_lsn: int, live: Callable[[RecordPosition], bool], sparse: float = 0.5
    ) -> ReclaimResult:
        """Delete old segments and compact sparse ones; see memento.reclaim.reclaim. Not while an
        AsyncWriter owns the log (use AsyncWriter.reclaim)."""
        from memento.reclaim import reclaim

        return reclaim(self, covered_lsn, live, sparse)

    def close(self) -> None:
        """Flush what is staged (unless the log failed), close files, release the lock."""
        if self._closed:
            return
        try:
            if self._error is None and staged_data(self):
                self.sync()
            if self._error is None and self._mark is not None:
                # A clean stop: everything up to durable_lsn is on disk (FORMAT.md, "MARK").
                self._mark.write(self.log_id, *self._newest, self._durable_lsn)
        finally:
            self._closed = True
            if self._mark is not None:
                self._mark.close()
            for seg in self._segments:
                if seg.fd >= 0:
                    os.close(seg.fd)
                    seg.fd = -1
                self._close_read_fd(seg.seq)
            self._spares.close()
            self.snapshots.close()
            os.close(self._lock_fd)

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pread_whole(fd: int, size: int, off: int) -> bytes:
    """At least `size` bytes from `off` (fewer only at the end of the file), and always the whole record
    that starts there: a record longer than the first read is completed with a second one."""
    data = os.pread(fd, size, off)
    if len(data) >= PREFIX.size:
        total = 8 + PREFIX.unpack_from(data)[0]
        if total > len(data):
            data += os.pread(fd, total - len(data), off + len(data))
    return data
