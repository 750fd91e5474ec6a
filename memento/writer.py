"""Group commit for asyncio: appends return their LSN at once; a writer thread makes them durable.

Strategy: `append` only stages the record in the Log (memory, under the log's lock) and returns its LSN.
One dedicated thread loops: take everything staged as one batch, write it, fdatasync, take what arrived
meanwhile as the next batch, report both to the event loop in one call_soon_threadsafe (this batch durable,
the next one taken: one loop wake-up per group commit), and go straight on with the next batch: what
arrives during an fsync is the next batch, and there is no timer. Because the thread picks up the next batch
itself, the fsync of one batch overlaps the event loop's work of waking the previous batch's waiters and
staging new records. When nothing is staged the thread sleeps on a lock that the next append releases.

A full disk is not fatal (nor is running out of file descriptors, EMFILE/ENFILE, handled the same way).
Segments are preallocated, so running out of space (ENOSPC, EDQUOT) shows up while creating the next segment
or writing into a sparse one, before anything is flushed; the batch's bytes are still in memory and writing
them again at the same offsets is idempotent. So the thread keeps the batch, reports the writer suspended
(`suspended`, `on_suspended`), and retries it with backoff (or at once on `retry_now`) while appends keep
staging; when a retry succeeds it reports `on_resumed` and the batch as durable, then goes on with what was
staged meanwhile. Waiters stay pending meanwhile. A crash while suspended leaves what any crash leaves: a torn
tail or a sealed last segment, which recovery repairs.

A log opened on a full disk starts with the creation of its next segment as the first batch (see
`Log.open`), so the writer starts suspended and resumes in the same way.

Any other error is final, and so is a failed fdatasync whatever its errno (after it the page cache state
is unknown), more than `staging_limit` bytes staged while suspended, or closing while suspended with
records staged: the log refuses further appends, every pending waiter gets LogFailed, and nothing more
becomes durable.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Final

from memento.disk import FULL_DISK_ERRNOS
from memento.errors import LogClosed, LogFailed, SyncFailed
from memento.log import Log
from memento.reclaim import ReclaimResult, batches, copy_records, delete, new_plan, plan, read_live
from memento.record import RecordPosition
from memento.staging import _Batch, batch_done, fail, take_batch, wake_idle, write_batch

# What a full disk looks like, and running out of file descriptors (creating the next segment while
# clients hold every descriptor: it works again once some close); only these are retried, and never from
# a sync (memento.errors.SyncFailed).
RETRYABLE_ERRNOS: Final = FULL_DISK_ERRNOS | {errno.EMFILE, errno.ENFILE}
# Backoff between retries of a batch that met a full disk: doubling from the first to the last (seconds).
RETRY_FIRST: Final = 0.2
RETRY_MAX: Final = 2.0
# Bytes staged while suspended beyond which the writer gives up: a long outage must not eat the memory.
STAGING_LIMIT: Final = 64 << 20


def retryable(exc: BaseException) -> bool:
    """True for an error that a later attempt at the same batch may get past: a full disk met while
    creating or writing a file (not while syncing one)."""
    return isinstance(exc, OSError) and exc.errno in RETRYABLE_ERRNOS and not isinstance(exc, SyncFailed)


class AsyncWriter:
    """Group-committing writer over `log`; create it inside the running event loop. While it runs it
    owns flushing: do not call `log.sync()` or `log.reclaim()` (use `sync` and `reclaim` here), and
    `await close()` before closing the log."""

    def __init__(
        self,
        log: Log,
        *,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        staging_limit: int = STAGING_LIMIT,
    ) -> None:
        self.log = log
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.staging_limit = staging_limit
        # Called on the event loop when a full disk suspends writing (with the error) and when writing
        # resumes (with the seconds it was suspended); the owner sets them.
        self.on_suspended: Callable[[OSError], None] | None = None
        self.on_resumed: Callable[[float], None] | None = None
        # Called on the event loop with the new durable LSN after each batch (a replication leader samples
        # its volume there, a follower acknowledges once per batch).
        self.on_durable: Callable[[int], None] | None = None
        # Called on the event loop with the batch's last LSN when the thread takes a batch to write (a
        # replication leader sends its followers what the batch holds then, one frame per group commit
        # rather than per event-loop turn). Set before the records of interest are appended: a batch
        # taken while it is None is not reported.
        self.on_taken: Callable[[int], None] | None = None
        # Called in the writer thread itself with the batch's last LSN when it takes a batch, before
        # `on_taken` and before the write: a replication leader's sender threads start sending it at
        # once, with no event-loop turn per group commit. It must be quick and must not block (wake
        # someone, no I/O); set it before the records of interest are appended, as `on_taken`.
        self.on_taken_thread: Callable[[int], None] | None = None
        self._suspended: OSError | None = None
        self._retry = threading.Event()
        self._loop = asyncio.get_running_loop()
        # monotonic time since which writing is suspended, when it is from the start (read by the thread)
        self._suspended_since = 0.0
        no_room = log.waiting_for_space
        if no_room is not None:
            # Opened on a full disk: report it before anything else runs on the loop, so that the owner
            # refuses work (and blocks publishers) before its first client is served.
            self._suspended_since = time.monotonic()
            self._loop.call_soon(self._suspend, no_room)
        self._durable = log.durable_lsn
        self.batches = 0  # batches made durable (group commits), for reports
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (lsn, tie, future)
        self._tie = itertools.count()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._done.set_result(None)
        self._closing = False
        self._error: LogFailed | None = log.failed
        self._thread_done: asyncio.Future[None] = self._loop.create_future()
        # A daemon thread, not an executor: a writer that is never closed must not hang interpreter exit.
        self._thread = threading.Thread(target=self._main, name="memento-writer", daemon=True)
        self._thread.start()

    @property
    def durable_lsn(self) -> int:
        """Every record up to this LSN is on disk."""
        return self._durable

    @property
    def failed(self) -> LogFailed | None:
        """The failure that stopped the writer, or None."""
        return self._error or self.log.failed

    @property
    def suspended(self) -> OSError | None:
        """The full-disk error the writer is retrying past (nothing becomes durable meanwhile), or None."""
        return self._suspended

    def retry_now(self) -> None:
        """Retry a suspended batch now instead of at the end of the backoff (space was freed)."""
        self._retry.set()

    def append(self, rtype: int, payload: bytes | bytearray | memoryview, flags: int = 0) -> int:
        """Stage a record and return its LSN without blocking; raises LogFailed after a failure."""
        if self._closing:
            raise LogClosed("writer is closed")
        return self.log.append(rtype, payload, flags)

    def append_at(
        self, rtype: int, payload: bytes | bytearray | memoryview, flags: int = 0
    ) -> tuple[int, RecordPosition]:
        """`append`, also returning where the record will be (for reading it back by position)."""
        lsn = self.append(rtype, payload, flags)
        return lsn, self.log.last_position

    def wait_durable(self, lsn: int) -> asyncio.Future[None]:
        """An awaitable that completes once `lsn` is durable (`await writer.wait_durable(lsn)`); it raises
        LogFailed if the log failed first. Each caller gets its own future, so cancelling one waiter
        never disturbs the others."""
        if lsn <= self._durable:
            return self._done
        log = self.log
        error = self._error or log._error  # attributes, not properties: this is the hot path
        if error is not None:
            raise error
        if lsn >= log._next_lsn:
            raise ValueError(f"LSN {lsn} was never appended (last is {log.end_lsn})")
        fut = self._loop.create_future()
        heapq.heappush(self._waiters, (lsn, next(self._tie), fut))
        return fut

    def when_durable(self, lsn: int, callback: Callable[[], None]) -> None:
        """Call `callback()` once `lsn` is durable (at once if it is); never if the log fails (then
        `failed` is set)."""
        if lsn <= self._durable:
            callback()
            return
        self.wait_durable(lsn).add_done_callback(
            lambda fut: callback() if not fut.cancelled() and fut.exception() is None else None
        )

    async def sync(self) -> None:
        """Wait until everything appended so far is durable."""
        await self.wait_durable(self.log.end_lsn)

    # -- the writer thread, and its reports to the loop -------------------------------------------------

    def _main(self) -> None:
        try:
            self._work()
        except RuntimeError:
            pass  # the event loop was closed under us: nobody is left to report to
        finally:
            try:
                self._loop.call_soon_threadsafe(self._finished)
            except RuntimeError:
                pass

    def _finished(self) -> None:
        if not self._thread_done.done():
            self._thread_done.set_result(None)

    def _work(self) -> None:
        log = self.log
        call = self._loop.call_soon_threadsafe
        # Held while the thread may sleep; the append that finds `wake` registered releases it. A bare
        # lock, not an Event (a Condition in Python code): the wake-up is on the event loop's hot path.
        # A wake-up that comes late (the lock was released already) is dropped; one too many only makes
        # the thread look at the staging area once more, which is where the truth is.
        idle = threading.Lock()

        def wake() -> None:
            try:
                idle.release()
            except RuntimeError:
                pass  # released already

        batch: _Batch | None = None
        while True:
            if batch is None:
                idle.acquire(blocking=False)  # held from here: only a registered wake releases it
                batch = take_batch(log, wake)
                if batch is None:
                    if self._closing:
                        return
                    idle.acquire()  # until the next append (or close) releases it
                    continue
                # Before the write: the loop (and the replication senders) learn of the batch while its
                # fsync runs.
                taken = self._report_taken(batch)
                if taken:
                    call(self._taken, taken)
            if not self._write(batch):
                return
            # The next batch is taken before this one is reported, so that one wake-up of the loop
            # reports both (this batch durable, the next one taken) instead of one each.
            idle.acquire(blocking=False)
            following = take_batch(log, wake)
            call(self._reported, batch, self._report_taken(following) if following is not None else 0)
            batch = following

    def _report_taken(self, batch: _Batch) -> int:
        """Tell the thread's listener that `batch` was taken; the LSN to report on the loop (0: none)."""
        on_thread = self.on_taken_thread
        if on_thread is not None:
            on_thread(batch.last_lsn)
        return batch.last_lsn if self.on_taken is not None else 0

    def _write(self, batch: _Batch) -> bool:
        """Write `batch`, retrying past a full disk; False once the log failed for good (reported)."""
        log = self.log
        call = self._loop.call_soon_threadsafe
        delay = self.retry_first
        since, self._suspended_since = self._suspended_since, 0.0
        while True:
            try:
                write_batch(log, batch)
            except Exception as exc:  # an OSError in practice; anything else must not leave waiters hanging
                if not isinstance(exc, OSError) or not retryable(exc):
                    call(self._fail, fail(log, exc))
                    return False
                if not since:
                    since = time.monotonic()
                    call(self._suspend, exc)
                if self._loop.is_closed():
                    return False  # nobody is left to report to, or to wait
                if self._closing and not any(chunk.data for chunk in batch.chunks):
                    # Only the creation of a segment (a log opened on a full disk) and no record for it:
                    # stopping without it loses nothing, so the log is not failed for it.
                    return True
                staged = self._staged_bytes()
                if self._closing or staged > self.staging_limit:
                    why = (
                        "closed while suspended"
                        if self._closing
                        else f"{staged} bytes staged while suspended, over the {self.staging_limit} B limit"
                    )
                    call(self._fail, fail(log, OSError(exc.errno, f"{exc.strerror or exc}; {why}")))
                    return False
                self._retry.wait(delay)
                self._retry.clear()
                delay = min(delay * 2, self.retry_max)
                continue
            if since:
                call(self._resume, time.monotonic() - since)
            return True

    def _staged_bytes(self) -> int:
        log = self.log
        with log._lock:
            return sum(len(chunk.data) for chunk in log._staged)

    def _suspend(self, error: OSError) -> None:
        if self._error is not None:
            return
        self._suspended = error
        if self.on_suspended is not None:
            self.on_suspended(error)

    def _resume(self, seconds: float) -> None:
        self._suspended = None
        if self.on_resumed is not None:
            self.on_resumed(seconds)

    def _taken(self, last_lsn: int) -> None:
        if self.on_taken is not None:
            self.on_taken(last_lsn)

    def _reported(self, batch: _Batch, taken: int) -> None:
        self._batch_durable(batch)
        if taken:
            self._taken(taken)

    def _batch_durable(self, batch: _Batch) -> None:
        batch_done(self.log, batch)
        self.batches += 1
        last = self._durable = batch.last_lsn
        waiters = self._waiters
        pop = heapq.heappop
        while waiters and waiters[0][0] <= last:
            fut = pop(waiters)[2]
            if not fut.done():  # a cancelled waiter
                fut.set_result(None)
        if self.on_durable is not None:
            self.on_durable(last)

    def _fail(self, error: LogFailed) -> None:
        self._error = error
        self._suspended = None
        for _lsn, _tie, fut in self._waiters:
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved here: waiters that gave up must not log "never retrieved"
        self._waiters = []

    # -- space, closing ----------------------------------------------------------------------------------

    async def reclaim(
        self, covered_lsn: int, live: Callable[[RecordPosition], bool], sparse: float = 0.5
    ) -> ReclaimResult:
        """`Log.reclaim` for a log this writer owns: the planning (header scans and the `live` calls, so
        `live` must be safe to call from a worker thread) and the reads of the records to copy in a
        thread, the copies on the event loop, deletions only after the copies are durable."""
        todo, segments = new_plan(self.log, covered_lsn, sparse)
        await asyncio.to_thread(plan, todo, segments, live)
        moved: dict[RecordPosition, RecordPosition] = {}
        for spans in todo.copy:
            for start, stop in batches(spans):
                records = await asyncio.to_thread(read_live, spans, start, stop)
                copy_records(self.log, spans.seg, records, moved)
        if moved:
            await self.sync()
        names, freed = delete(self.log, todo, sync_dir=False)
        if names:
            await asyncio.to_thread(self.log.disk.fsync_dir, self.log.wal_dir)
        return ReclaimResult(names, moved, freed)

    async def close(self) -> None:
        """Make everything appended durable (unless failed) and stop the thread. The log stays open:
        close it afterwards. While suspended, the batch gets one more attempt; if the disk is still full
        the log fails (the pending waiters get LogFailed)."""
        self._closing = True
        wake_idle(self.log)
        self._retry.set()  # a suspended batch gets one last attempt, then fails
        await self._thread_done  # reported after the last batch's report, so all waiters are settled
        self._thread.join()
