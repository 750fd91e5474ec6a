"""What appends stage and a flush writes: the log's segments, chunks of staged bytes, and the flush itself.

Strategy: `Log.append` only encodes records into the current `_Chunk` (one per target segment, planned in
memory with any rollover) under the log's lock. A flush (`Log.sync`, or the AsyncWriter's thread) takes
every staged chunk as one `_Batch` (`take_batch`), does its I/O with no lock held (`write_batch`: create
a planned segment, one pwrite per chunk, fdatasync) and, on the owner's thread, marks it durable
(`batch_done`). These functions run once per batch, never per record, and reach into the Log's state
directly: they are the Log's own code, kept apart from the append and read paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from memento.errors import LogFailed
from memento.record import FRAME, Frame
from memento.segment import create_segment, synced

if TYPE_CHECKING:
    from memento.log import Log

_PAGE: Final = 4096
# The smallest segment a rollover falls back to on a nearly full disk (next_segment_size).
_SMALLEST_FALLBACK: Final = 1 << 20


class _Segment:
    """One segment file as the log tracks it (planned, active or sealed)."""

    __slots__ = ("base_lsn", "fd", "frame", "name", "path", "seq", "size")

    def __init__(
        self, seq: int, base_lsn: int, size: int, path: str, fd: int = -1, frame: Frame = FRAME
    ) -> None:
        self.seq = seq
        self.base_lsn = base_lsn
        self.size = size
        self.path = path
        self.name = os.path.basename(path)
        self.fd = fd  # -1 until opened (lazily for reads; by the flush when it creates the file)
        self.frame = frame  # its records' layout (its header's format version; new segments: current)


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


def next_segment_size(log: Log) -> int:
    """The configured segment size, or less when the disk has not twice that much room: a quarter
    of the free space, at least 1 MiB (or the configured size if smaller). A rollover that insists
    on a whole segment suspends the log while smaller files would still fit, and a suspended log
    writes nothing that could free space (consumers' acks, then a snapshot and the reclaim of old
    segments)."""
    full = log.segment_size
    if log._spares.ready(full):
        return full  # already allocated
    try:
        free = log.disk.free_bytes(log.wal_dir)
    except OSError:
        return full
    if free >= 2 * full:
        return full
    return max(min(full, _SMALLEST_FALLBACK), free // 4 // _PAGE * _PAGE)


def take_batch(log: Log, idle: Callable[[], object] | None = None) -> _Batch | None:
    """Take everything staged as one batch; when there is nothing, register `idle` to be called by the
    next append (it wakes the AsyncWriter's thread)."""
    with log._lock:
        if not log._staged:
            log._idle_waiter = idle
            return None
        batch = _Batch(log._staged, log._next_lsn - 1)
        log._staged = []
        log._chunk = None
        if log._inflight is not None:
            log._written = log._inflight  # written, its durability not yet reported to the owner
        log._inflight = batch
        return batch


def staged_data(log: Log) -> bool:
    """True when records are staged (not only the creation of a segment, which can wait for the
    next flush: a log opened on a full disk closes without needing the space)."""
    with log._lock:
        return any(chunk.data for chunk in log._staged)


def wake_idle(log: Log) -> None:
    """Wake the writer thread if it waits for work (used when closing)."""
    with log._lock:
        waiter = log._idle_waiter
        log._idle_waiter = None
    if waiter is not None:
        waiter()


def write_batch(log: Log, batch: _Batch) -> None:
    """Do the I/O of one batch (any thread; never concurrently with another batch).

    Idempotent until a sync fails, so the AsyncWriter retries a batch that met a full disk: chunks
    already written are written again with the same bytes, a segment already created is kept. A failed
    fdatasync raises SyncFailed (never retried)."""
    disk = log.disk
    last = batch.chunks[-1]
    for chunk in batch.chunks:
        seg = chunk.segment
        if chunk.create and seg.fd < 0:
            seg.fd, _path = create_segment(
                log.wal_dir,
                seg.seq,
                seg.base_lsn,
                seg.size,
                disk,
                log._spares.take(seg.size),
                log_id=log.log_id,
            )
        if chunk.create and log._newest[0] < seg.seq and log._mark is not None:
            # Before any record in it is reported durable, MARK names the new segment, so losing it
            # later is noticed at open (FORMAT.md, "MARK"). Retried with the batch, like the creation.
            log._mark.write(log.log_id, seg.seq, seg.base_lsn, None)
            log._newest = (seg.seq, seg.base_lsn)
        if chunk.data:
            disk.pwrite(seg.fd, chunk.data, chunk.offset)
        if chunk.seal or chunk is last:
            synced(disk.fdatasync, seg.fd)
    if (last.offset + len(last.data)) * 2 >= last.segment.size:
        log._spares.start(log.segment_size)  # half full: get the next segment ready


def batch_done(log: Log, batch: _Batch) -> None:
    """After a batch is durable (on the owner's thread): advance durable_lsn, and close the write fd
    of segments it sealed (reads reopen them read-only on demand), so fds do not pile up."""
    log._durable_lsn = batch.last_lsn
    with log._lock:
        if log._inflight is batch:
            log._inflight = None
        if log._written is batch:
            log._written = None
    for chunk in batch.chunks:
        seg = chunk.segment
        if chunk.seal and seg.fd >= 0:
            os.close(seg.fd)
            seg.fd = -1


def fail(log: Log, exc: BaseException) -> LogFailed:
    """Stop the log for good after a write or fsync error that is not retried; returns the LogFailed
    to raise."""
    if log._error is None:
        log._error = LogFailed(
            f"{log.path}: write or fsync failed ({exc}); nothing after LSN "
            f"{log._durable_lsn} is durable; reopen to recover"
        )
    return log._error
