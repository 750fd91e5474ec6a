"""The log: a directory of segments, opened with recovery, appended to, read by position, replayed.

Strategy: appends only encode into in-memory chunks (one per target segment) and return the LSN at once;
the position of every record is known at append time because the tail offset and any rollover are planned
in memory. A flush (`sync`, or the AsyncWriter's background thread) takes all staged chunks as one batch and
does the I/O: create the next segment if a rollover was planned, one pwrite per chunk, fdatasync. Only the
flush touches segment files for writing, so the event loop can keep appending while a flush runs; the
batch being flushed stays readable from memory until it is done. `sync` treats any I/O error as final;
the AsyncWriter retries a batch that met a full disk (see memento.writer).

Directory layout: LOCK, wal/*.wal, snapshots/ (LMDB, memento.snapshot), quarantine/ (damaged bytes).
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import crc32c

from memento.disk import DiskIO, disk_full
from memento.errors import LogClosed, LogFailed, RecoveryRefused, SyncFailed, UnsupportedVersion
from memento.lock import lock_directory
from memento.private import private_dir
from memento.reader import decode_at, records_in
from memento.record import (
    BODY_HEAD,
    BODY_HEAD_SIZE,
    ENGINE_TYPES,
    FLAG_ORIGIN,
    FLAG_RELOCATED,
    HEAD,
    HEAD_SIZE,
    ORIGIN,
    PREFIX,
    SEAL_SIZE,
    TYPE_SEAL,
    USER_FLAGS_MASK,
    USER_TYPES,
    Record,
    RecordPosition,
)
from memento.recovery import REFUSED, UNSUPPORTED, RecoveryReport, Verdict, classify
from memento.repair import apply_verdict
from memento.scan import SegmentScan, scan_segment
from memento.segment import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    MIN_SEGMENT_SIZE,
    SUFFIX,
    TMP_SUFFIX,
    create_segment,
    parse_name,
    segment_name,
    synced,
)
from memento.snapshot import STATUS_DAMAGED, STATUS_FALLBACK, STATUS_UNREADABLE, Snapshot, SnapshotStore
from memento.spare import SPARE_DIR, SparePreparer

if TYPE_CHECKING:
    from memento.reclaim import ReclaimResult

WAL_DIR: Final = "wal"
SNAPSHOT_DIR: Final = "snapshots"
QUARANTINE_DIR: Final = "quarantine"
LOCK_FILE: Final = "LOCK"
_READ_AHEAD: Final = 4096
# Reads that walk forward through a segment (a queue's backlog being delivered) switch to one pread of
# this size, and serve the following records from it.
_WINDOW: Final = 256 * 1024
_PAGE: Final = 4096
# The smallest segment a rollover falls back to on a nearly full disk (_next_segment_size).
_SMALLEST_FALLBACK: Final = 1 << 20
# Read-only descriptors kept open on sealed segments (least recently read closed first).
_READ_FDS: Final = 8
_crc = crc32c.crc32c
_pack_prefix = PREFIX.pack
_pack_body_head = BODY_HEAD.pack


class _Segment:
    """One segment file as the log tracks it (planned, active or sealed)."""

    __slots__ = ("base_lsn", "fd", "name", "path", "seq", "size")

    def __init__(self, seq: int, base_lsn: int, size: int, path: str, fd: int = -1) -> None:
        self.seq = seq
        self.base_lsn = base_lsn
        self.size = size
        self.path = path
        self.name = os.path.basename(path)
        self.fd = fd  # -1 until opened (lazily for reads; by the flush when it creates the file)


class _Chunk:
    """Staged bytes for one segment, starting at `offset`; `create` and `seal` say what the flush does."""

    __slots__ = ("create", "data", "offset", "seal", "segment")

    def __init__(self, segment: _Segment, offset: int, create: bool) -> None:
        self.segment = segment
        self.offset = offset
        self.data = bytearray()
        self.create = create
        self.seal = False


class _Batch:
    """What one flush writes: chunks in order, and the last LSN they hold."""

    __slots__ = ("chunks", "last_lsn")

    def __init__(self, chunks: list[_Chunk], last_lsn: int) -> None:
        self.chunks = chunks
        self.last_lsn = last_lsn


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
        # Appends (owner thread) and batch taking (possibly the AsyncWriter's thread) share the staging
        # area: this lock covers it. `_idle_waiter` is the writer thread's event while it waits for work.
        self._lock = threading.Lock()
        self._idle_waiter: threading.Event | None = None
        self._spares = SparePreparer(str(path / SPARE_DIR), disk)
        self._error: LogFailed | None = None
        self._no_room: OSError | None = None  # why open could not create the tail segment
        self._closed = False
        # The last window read (segment seq, offset, bytes) and where the last single read was.
        self._window: tuple[int, int, bytes] = (-1, 0, b"")
        # Read-only descriptors on sealed segments, least recently read first (`_read_fd`).
        self._read_fds: OrderedDict[int, int] = OrderedDict()
        self._last_read = (-1, 0)
        # seq -> last LSN copied out of that segment by compaction (see memento.reclaim)
        self.relocated_through: dict[int, int] = {}

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
    ) -> Log:
        """Open (creating if needed) the log at `path`: lock it, load the newest snapshot, recover.

        `registry` lists the record types callers use (None accepts all); a record of another type found
        on open raises UnsupportedVersion. A torn tail is quarantined and truncated (see
        `recovery_report`); other damage raises RecoveryRefused, unless `salvage` keeps what is valid up to
        it. Segments wholly covered by the snapshot are only header-checked unless `full_check`.
        """
        if segment_size < MIN_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be at least {MIN_SEGMENT_SIZE}")
        root = Path(path)
        private_dir(root / WAL_DIR)
        for name in (SNAPSHOT_DIR, QUARANTINE_DIR):
            if os.path.lexists(root / name) and not (root / name).is_dir():
                # Found now rather than at the first snapshot or repair, which would fail every time.
                raise NotADirectoryError(
                    errno.ENOTDIR, "not a directory (the log keeps one there)", str(root / name)
                )
        lock_fd = lock_directory(root / LOCK_FILE)
        store: SnapshotStore | None = None
        try:
            store = SnapshotStore(root / SNAPSHOT_DIR)
            snapshot = store.load_latest()
            known = frozenset(registry) | ENGINE_TYPES if registry is not None else None
            log = cls(
                root,
                segment_size=segment_size,
                registry=known,
                disk=disk or DiskIO(),
                lock_fd=lock_fd,
                store=store,
                snapshot=snapshot,
            )
            log._recover(salvage=salvage, full_check=full_check)
            return log
        except BaseException:
            if store is not None:
                store.close()
            os.close(lock_fd)
            raise

    def _recover(self, *, salvage: bool, full_check: bool) -> None:
        report = self.recovery_report
        SparePreparer.clear(self._spares.directory)
        report.snapshot_lsn = self.snapshot_lsn
        store = self.snapshots
        if store.status in (STATUS_DAMAGED, STATUS_UNREADABLE):
            if not salvage:
                raise RecoveryRefused(f"{store.path}: {store.fallback_reason}")
            report.warnings.append(f"salvage: ignoring snapshots: {store.fallback_reason}")
        elif store.status == STATUS_FALLBACK:
            report.warnings.append(
                f"newest snapshot damaged, using LSN {self.snapshot_lsn}: {store.fallback_reason}"
            )
        names = sorted(os.listdir(self.wal_dir))
        for name in names:
            if name.endswith(TMP_SUFFIX):
                os.unlink(os.path.join(self.wal_dir, name))
                report.dropped_tmp.append(name)
                report.warnings.append(f"dropped unfinished segment {name}")
        if report.dropped_tmp:
            self.disk.fsync_dir(self.wal_dir)
        segment_names = [n for n in names if n.endswith(SUFFIX) and parse_name(n) is not None]
        segment_names.sort(key=lambda n: parse_name(n) or (0, 0))
        for name in names:
            if name.endswith(SUFFIX) and parse_name(name) is None:
                report.warnings.append(f"ignored file with a segment suffix but no segment name: {name}")
        scans = self._scan(segment_names, full_check)
        verdict = classify(scans, self.snapshot_lsn)
        report.findings.extend(verdict.findings)
        report.status = verdict.status
        if verdict.status in (REFUSED, UNSUPPORTED):
            if not salvage:
                text = "; ".join(f.message for f in verdict.findings if f.severity != "repairable")
                first = next(f for f in verdict.findings if f.severity in (REFUSED, UNSUPPORTED))
                error = UnsupportedVersion if verdict.status == UNSUPPORTED else RecoveryRefused
                raise error(
                    f"{self.path}: recovery refused: {text} (salvage keeps what is valid)",
                    segment=first.segment,
                    offset=first.offset,
                    lsn=first.lsn,
                )
            report.salvaged = True
        for finding in verdict.findings:
            report.warnings.append(finding.message)
        kept = apply_verdict(self.wal_dir, self.path / QUARANTINE_DIR, scans, verdict, self.disk, report)
        self._start(kept, verdict)
        report.end_lsn = self._next_lsn - 1

    def _scan(self, names: list[str], full_check: bool) -> list[SegmentScan]:
        bases = [(parse_name(n) or (0, 0))[1] for n in names]
        scans: list[SegmentScan] = []
        for i, name in enumerate(names):
            path = os.path.join(self.wal_dir, name)
            next_base = bases[i + 1] if i + 1 < len(names) else None
            covered = next_base is not None and next_base <= self.snapshot_lsn + 1 and not full_check
            with open(path, "rb") as f:
                if covered or os.fstat(f.fileno()).st_size < HEADER_SIZE:
                    scans.append(
                        scan_segment(
                            name, f.read(HEADER_SIZE if covered else -1), self.registry, headers_only=covered
                        )
                    )
                    continue
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    scans.append(scan_segment(name, data, self.registry))
        return scans

    def _start(self, kept: list[SegmentScan], verdict: Verdict) -> None:
        for scan in kept:
            size = scan.header.size if scan.header is not None else scan.size
            seg = _Segment(
                scan.seq, scan.base_lsn, max(size, scan.size), os.path.join(self.wal_dir, scan.name)
            )
            self._segments.append(seg)
            self._by_seq[seg.seq] = seg
        self._next_lsn = verdict.next_lsn
        self._durable_lsn = verdict.next_lsn - 1
        tail_scan = kept[-1] if kept else None
        if (
            tail_scan is not None
            and tail_scan.scanned
            and not tail_scan.sealed
            and tail_scan.last_lsn + 1 == self._next_lsn
        ):
            tail = self._segments[-1]
            tail.fd = os.open(tail.path, os.O_RDWR | os.O_CLOEXEC)
            self._set_tail(tail, tail_scan.data_end)
            return
        # No segment, a sealed last one (crash mid-rollover), or salvage moved past the log's end.
        seq = kept[-1].seq + 1 if kept else 1
        path = os.path.join(self.wal_dir, segment_name(seq, self._next_lsn))
        seg = _Segment(seq, self._next_lsn, self.segment_size, path)
        try:
            seg.fd, _path = create_segment(self.wal_dir, seq, self._next_lsn, self.segment_size, self.disk)
        except OSError as exc:
            if not disk_full(exc) or isinstance(exc, SyncFailed):
                raise
            # A full disk (typically the crash that follows one) must not keep the log from opening:
            # everything recovered is readable, and the creation becomes the first flush's work, which
            # the AsyncWriter retries until space returns (suspended meanwhile, as for any rollover).
            self.recovery_report.warnings.append(
                f"no room for the next segment {seg.name} ({exc.strerror or exc}): writing waits for "
                f"{self.segment_size} bytes free in {self.wal_dir}"
            )
            self._no_room = exc
        self._segments.append(seg)
        self._by_seq[seq] = seg
        self._set_tail(seg, HEADER_SIZE)
        if seg.fd < 0:
            self._new_chunk(True)

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
        return RecordPosition(self._tail.seq, self._last_off)

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
        return self._append(rtype, flags, payload)

    def _append(self, rtype: int, flags: int, payload: bytes | bytearray | memoryview) -> int:
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
            body_head = _pack_body_head(rtype, flags, 0, lsn)
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
            waiter.set()
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
        body_head = _pack_body_head(TYPE_SEAL, 0, 0, self._next_lsn)
        chunk.data += _pack_prefix(len(body_head), _crc(body_head)) + body_head
        chunk.seal = True
        seg_size = max(self._next_segment_size(), HEADER_SIZE + size + SEAL_SIZE)
        seq = tail.seq + 1
        path = os.path.join(self.wal_dir, f"{seq:016x}-{self._next_lsn:016x}{SUFFIX}")
        seg = _Segment(seq, self._next_lsn, seg_size, path)
        self._segments.append(seg)
        self._by_seq[seq] = seg
        self._set_tail(seg, HEADER_SIZE)
        self._new_chunk(True)

    def _next_segment_size(self) -> int:
        """The configured segment size, or less when the disk has not twice that much room: a quarter
        of the free space, at least 1 MiB (or the configured size if smaller). A rollover that insists
        on a whole segment suspends the log while smaller files would still fit, and a suspended log
        writes nothing that could free space (consumers' acks, then a snapshot and the reclaim of old
        segments)."""
        full = self.segment_size
        if self._spares.ready(full):
            return full  # already allocated
        try:
            free = self.disk.free_bytes(self.wal_dir)
        except OSError:
            return full
        if free >= 2 * full:
            return full
        return max(min(full, _SMALLEST_FALLBACK), free // 4 // _PAGE * _PAGE)

    # -- flushing (the AsyncWriter runs _write_batch in its thread) -----------------------------------

    def sync(self) -> None:
        """Write and fdatasync everything appended so far. Raises LogFailed if the disk fails."""
        if self._error is not None:
            raise self._error
        batch = self._take_batch()
        if batch is None:
            return
        try:
            self._write_batch(batch)
        except OSError as exc:
            raise self._fail(exc) from exc
        self._batch_done(batch)

    def _take_batch(self, idle: threading.Event | None = None) -> _Batch | None:
        """Take everything staged as one batch; when there is nothing, register `idle` to be set by the
        next append (the AsyncWriter's thread waits on it)."""
        with self._lock:
            if not self._staged:
                self._idle_waiter = idle
                return None
            batch = _Batch(self._staged, self._next_lsn - 1)
            self._staged = []
            self._chunk = None
            self._inflight = batch
            return batch

    def _staged_data(self) -> bool:
        """True when records are staged (not only the creation of a segment, which can wait for the
        next flush: a log opened on a full disk closes without needing the space)."""
        with self._lock:
            return any(chunk.data for chunk in self._staged)

    def _wake_idle(self) -> None:
        """Wake the writer thread if it waits for work (used when closing)."""
        with self._lock:
            waiter = self._idle_waiter
            self._idle_waiter = None
        if waiter is not None:
            waiter.set()

    def _write_batch(self, batch: _Batch) -> None:
        """Do the I/O of one batch (any thread; never concurrently with another batch).

        Idempotent until a sync fails, so the AsyncWriter retries a batch that met a full disk: chunks
        already written are written again with the same bytes, a segment already created is kept. A failed
        fdatasync raises SyncFailed (never retried)."""
        disk = self.disk
        last = batch.chunks[-1]
        for chunk in batch.chunks:
            seg = chunk.segment
            if chunk.create and seg.fd < 0:
                seg.fd, _path = create_segment(
                    self.wal_dir, seg.seq, seg.base_lsn, seg.size, disk, self._spares.take(seg.size)
                )
            if chunk.data:
                disk.pwrite(seg.fd, chunk.data, chunk.offset)
            if chunk.seal or chunk is last:
                synced(disk.fdatasync, seg.fd)
        if (last.offset + len(last.data)) * 2 >= last.segment.size:
            self._spares.start(self.segment_size)  # half full: get the next segment ready

    def _batch_done(self, batch: _Batch) -> None:
        """After a batch is durable (on the owner's thread): advance durable_lsn, and close the write fd
        of segments it sealed (reads reopen them read-only on demand), so fds do not pile up."""
        self._durable_lsn = batch.last_lsn
        with self._lock:
            if self._inflight is batch:
                self._inflight = None
        for chunk in batch.chunks:
            seg = chunk.segment
            if chunk.seal and seg.fd >= 0:
                os.close(seg.fd)
                seg.fd = -1

    def _fail(self, exc: BaseException) -> LogFailed:
        """Stop the log for good after a write or fsync error that is not retried; returns the LogFailed
        to raise."""
        if self._error is None:
            self._error = LogFailed(
                f"{self.path}: write or fsync failed ({exc}); nothing after LSN "
                f"{self._durable_lsn} is durable; reopen to recover"
            )
        return self._error

    # -- reading -------------------------------------------------------------------------------------

    def read(self, position: RecordPosition) -> Record:
        """The record at `position` (one or two preads, or from memory if not yet written).

        Reads that move forward through one segment are served from a window of `_WINDOW` bytes read
        with one pread. A record found whole in the window, with its checksum right, is the record:
        records are never changed in place. Anything else there (zeros or a partial record past what
        was written when the window was read) is read again the plain way.
        """
        seq, off = position
        w_seq, w_off, w_data = self._window
        if w_seq == seq and w_off <= off < w_off + len(w_data) - HEAD_SIZE:
            at = off - w_off
            length, stored, rtype, flags, _res, lsn = HEAD.unpack_from(w_data, at)
            end = at + 8 + length
            if (
                length >= BODY_HEAD_SIZE
                and end <= len(w_data)
                and _crc(memoryview(w_data)[at + 8 : end]) == stored
            ):
                return Record(lsn, rtype, flags, w_data[at + HEAD_SIZE : end], position)
        seg = self._by_seq.get(seq)
        if seg is None:
            raise KeyError(f"no segment {seq} in {self.wal_dir}")
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
                self._window = (seq, off, data)
        else:
            data = _pread_whole(fd, _READ_AHEAD, off)
        return decode_at(data, 0, seg.seq, seg.name, off)

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
                return decode_at(bytes(chunk.data[rel : rel + total]), 0, seg.seq, seg.name, off)
        return None

    def replay(self, after_lsn: int | None = None) -> Iterator[Record]:
        """Records with LSN > `after_lsn` (default: the snapshot's LSN), in order; seals are not
        records. Flushes staged appends first, so not while an AsyncWriter runs (replay before starting
        one). Raises CorruptRecord on damage found on the way."""
        start = self.snapshot_lsn if after_lsn is None else after_lsn
        if self._staged_data():
            self.sync()
        segments = list(self._segments)
        for i, seg in enumerate(segments):
            if i + 1 < len(segments) and segments[i + 1].base_lsn <= start + 1:
                continue
            if seg is self._tail:
                if seg.fd < 0:
                    continue  # not created yet (opened on a full disk): it holds no record
                yield from records_in(
                    os.pread(seg.fd, self._tail_off, 0), seg.seq, seg.base_lsn, seg.name, start
                )
                continue
            with open(seg.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield from records_in(data, seg.seq, seg.base_lsn, seg.name, start)

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
            if self._error is None and self._staged_data():
                self.sync()
        finally:
            self._closed = True
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

    # -- used by memento.reclaim ---------------------------------------------------------------------

    def _relocate(self, record: Record) -> int:
        """Append a copy of `record` (same type and flags plus FLAG_RELOCATED | FLAG_ORIGIN, the payload
        after the original's LSN); its new LSN. A copy of a copy keeps the first original's LSN."""
        if self._error is not None:
            raise self._error
        flags = record.flags
        if flags & FLAG_RELOCATED:  # already a copy: its origin (or a version-1 copy's lack of one) stays
            return self._append(record.type, flags, record.payload)
        return self._append(
            record.type, flags | FLAG_RELOCATED | FLAG_ORIGIN, ORIGIN.pack(record.lsn) + record.payload
        )

    def _sealed_segments(self) -> list[tuple[_Segment, int]]:
        """Segments whose seal is durable (the next one starts at or below durable_lsn), with the last
        LSN each holds."""
        segs = self._segments
        return [
            (segs[i], segs[i + 1].base_lsn - 1)
            for i in range(len(segs) - 1)
            if segs[i + 1].base_lsn <= self._durable_lsn
        ]

    def _drop_segment(self, seg: _Segment) -> None:
        """Forget and delete a segment file (the caller syncs the directory)."""
        if seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1
        self._close_read_fd(seg.seq)
        os.unlink(seg.path)
        self._segments.remove(seg)
        del self._by_seq[seg.seq]


def _pread_whole(fd: int, size: int, off: int) -> bytes:
    """At least `size` bytes from `off` (fewer only at the end of the file), and always the whole record
    that starts there: a record longer than the first read is completed with a second one."""
    data = os.pread(fd, size, off)
    if len(data) >= HEAD_SIZE:
        total = 8 + PREFIX.unpack_from(data)[0]
        if total > len(data):
            data += os.pread(fd, total - len(data), off + len(data))
    return data
