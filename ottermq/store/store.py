"""The durable store: opens the log, rebuilds the broker from it, snapshots, reclaims space, closes.

Strategy: the broker's state is a projection of the log. Opening runs Memento's recovery (torn tail
repaired, anything else refused), loads the newest snapshot into a broker made without defaults, replays
the records after it through the same `apply` code the live path uses, and only then makes the recovered
messages ready: redelivered after a crash, exactly as recorded after a clean stop. Publish records that
compaction copied forward (FLAG_RELOCATED) are skipped on replay: the snapshot that preceded the copy
already holds their messages, at their original places, which stay on disk until a later snapshot
covers the copies.

While serving, a background task snapshots when enough log volume was appended or enough time passed,
and after each snapshot asks Memento to reclaim space: a segment whose records are all covered and hold
no live message is deleted, sparse ones are compacted (their live publishes copied forward, and the
messages' locations updated). A clean stop snapshots after the last append is durable, so the next start
replays (almost) nothing. A failed snapshot or reclaim is logged in one line and counted (`health.py`),
and tried again later; the broker keeps serving. A background scrub (`scrub.py`) verifies the sealed
segments at a bounded rate and reports damage before a reader meets it.

Layout: `<data_dir>/log` is the Memento directory (wal/, snapshots/, quarantine/, LOCK).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from memento.disk import disk_full
from memento.log import Log
from memento.private import PRIVATE_FILE
from memento.record import RecordPosition
from ottermq.store.codec import (
    RECORD_TYPES,
    pack_loc,
    record_key,
)
from ottermq.store.contents import LogContents
from ottermq.store.health import EXPECTED_FAILURES, TaskHealth
from ottermq.store.heap import trim_heap
from ottermq.store.incidents import JournalIncidents
from ottermq.store.journal import MementoJournal
from ottermq.store.live import LiveRecords
from ottermq.store.recovery import RUNNING_MARK, RecoveryInfo, rebuild, report_recovery
from ottermq.store.salvage import plan_salvage
from ottermq.store.scrub import DEFAULT_INTERVAL, DEFAULT_RATE, Scrubber
from ottermq.store.snapshot import encode_snapshot, index_of
from ottermq.store.streams import STREAMS_DIR, MementoStreams

if TYPE_CHECKING:
    from memento.disk import DiskIO
    from ottermq.broker.broker import Broker, BrokerSettings

log: Final = logging.getLogger("ottermq.store")

LOG_DIR: Final = "log"
INDEX_MASK: Final = (1 << 20) - 1
_MiB: Final = 1024 * 1024
# What one held logged message costs in memory without its content (message, queue entry, their slots).
INDEX_BYTES: Final = 350
# Bounds of the memory for the contents of logged messages (see `content_budget`).
CONTENT_MIN: Final = 8 * _MiB
CONTENT_MAX: Final = 128 * _MiB


def content_budget(messages: int, memory: int) -> int:
    """How many bytes of logged messages' contents to keep in memory when `messages` are held and
    `memory` is what all of them may take: their index comes first, the contents get what is left,
    between CONTENT_MIN and CONTENT_MAX. A backlog of a few hundred thousand messages is then served
    from memory, and a million held messages still fit well under `memory` plus the broker itself."""
    return max(CONTENT_MIN, min(CONTENT_MAX, memory - messages * INDEX_BYTES))


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How the store snapshots and sizes its log."""

    segment_size: int = 64 * 1024 * 1024
    # Snapshot after this much log volume, or this many seconds with appends, whichever comes first.
    snapshot_bytes: int = 128 * 1024 * 1024
    snapshot_interval: float = 300.0
    # How often the background task looks (seconds).
    check_interval: float = 1.0
    salvage: bool = False
    # Memory for held logged messages, index and contents (`content_budget`); 0 keeps the journal's
    # fixed budget for contents.
    message_memory: int = 320 * _MiB
    # Memento's I/O seam (memento.disk.DiskIO); tests pass one that injects EIO or ENOSPC.
    disk: DiskIO | None = None
    # The background scrub of sealed segments: bytes per second, seconds from one pass to the next (either
    # 0: no scrub).
    scrub_rate: int = DEFAULT_RATE
    scrub_interval: float = DEFAULT_INTERVAL
    # Compact sparse segments (copy their live records forward). A replication follower does not: every
    # record in its log is the leader's, at the leader's LSN.
    compact: bool = True


class DurableStore:
    """One broker's log: `open`, `recover(broker)`, then inside the loop `start()`, and `stop()`."""

    def __init__(self, memento_log: Log, options: StoreOptions) -> None:
        self.log = memento_log
        self.options = options
        self.journal = MementoJournal(memento_log)
        # The broker's content store (given to the Broker this store recovers).
        self.contents = LogContents(self.journal.read_content)
        # Stream queues keep their records in logs of their own (streams.py).
        self.streams = MementoStreams(Path(memento_log.path).parent / STREAMS_DIR, disk=options.disk)
        incidents = JournalIncidents(self)
        self.journal.on_failure = incidents.failed
        self.journal.on_suspended = incidents.suspended
        self.journal.on_resumed = incidents.resumed
        self.streams.on_failure = incidents.stream_failed
        self.streams.on_resumed = incidents.stream_resumed
        self.broker: Broker | None = None
        self.recovery = RecoveryInfo()
        self._task: asyncio.Task[None] | None = None
        self._work: asyncio.Future[Any] | None = None  # the snapshot or reclaim the task is running
        self._snapshot_bytes_mark = 0
        self._snapshot_time = time.monotonic()
        self._snapshot_lsn = memento_log.snapshot_lsn
        self._snapshotting = False
        # How snapshots and reclamation went (ctl status, /metrics).
        self.snapshot_health = TaskHealth()
        self.reclaim_health = TaskHealth()
        self.scrubber = Scrubber(
            memento_log,
            self.contents.locations,
            rate=options.scrub_rate,
            interval=options.scrub_interval,
            registry=RECORD_TYPES,
        )

    @classmethod
    def open(cls, data_dir: Path, options: StoreOptions | None = None) -> DurableStore:
        """Open (creating) `<data_dir>/log` with recovery. Raises memento's RecoveryRefused (with segment,
        offset, LSN) for damage other than a torn tail, LogLocked if another process holds it."""
        options = options or StoreOptions()
        outcome = None
        if options.salvage:
            # Said before anything is changed: the same plan `serve --salvage --dry-run` prints.
            outcome = plan_salvage(Path(data_dir), options)
            if outcome.plan.needed or outcome.lost or outcome.bad_record is not None:
                for line in outcome.lines():
                    log.error(line)
        memento_log = Log.open(
            Path(data_dir) / LOG_DIR,
            segment_size=options.segment_size,
            registry=RECORD_TYPES,
            salvage=options.salvage,
            disk=options.disk,
            bad_record=outcome.bad_record if outcome is not None else None,
        )
        return cls(memento_log, options)

    def new_broker(self, settings: BrokerSettings | None = None) -> Broker:
        """The broker to `recover` into: no defaults, this store's journal and content store."""
        from ottermq.broker.broker import Broker

        broker = Broker(settings, self.journal, defaults=False, contents=self.contents)
        broker.streams = self.streams
        return broker

    # -- recovery ---------------------------------------------------------------------------------------

    def recover(self, broker: Broker, *, defaults: bool = True) -> RecoveryInfo:
        """Rebuild `broker` (made with `defaults=False`, this store's journal and its content store)
        from snapshot and log; a fresh log gets the default user and vhost unless not `defaults` (a
        replication follower: every record it holds is the leader's)."""
        if broker.contents is not self.contents:
            raise ValueError("the broker must be made with the store's content store (contents=...)")
        # Recovery allocates millions of long-lived objects and frees none: the cyclic collector would
        # rescan the growing heap again and again (2/3 of the time for a million messages).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.broker = broker
            self.scrubber.broker = broker
            return rebuild(broker, self.log, self.recovery, self.journal.read_content, defaults)
        finally:
            # What recovery built lives on: keep the collector from ever scanning it (reference counting
            # still frees each message when it is acked).
            gc.freeze()
            self.log.snapshot = None  # the state bytes are decoded; do not hold them for the process life
            if collecting:
                gc.enable()
            # The decompressed snapshot and its decoded arrays are gone: give their pages back.
            trim_heap()

    def promote(self) -> None:
        """A replication follower's store starts serving as the leader's: its projection (built record by
        record as they arrived) gets what recovery gives a restarted broker (every logged message ready,
        redelivered, as unacked ones after a crash), the broker's timers run, and compaction is on."""
        broker = self.broker
        assert broker is not None
        for vhost in broker.vhosts.values():
            for queue in vhost.queues.values():
                if queue.durable:
                    queue.promoted()
        broker.standby = False
        self.options = replace(self.options, compact=True)
        self.return_unacked()

    def return_unacked(self) -> int:
        """Before serving as the node that writes (a start that is not a follower's, a promotion): the
        logged messages of queues counting deliveries that were out to consumers when the log ended come
        back counted, as their consumers' channels closing would have brought them back (logged as
        returns; over x-delivery-limit they leave, dead-lettered as delivery_limit). How many. Then a
        queue over its length limit drops its head (`Topology.enforce_limits`)."""
        broker = self.broker
        assert broker is not None
        returned = sum(vhost.return_unacked() for vhost in broker.vhosts.values())
        if returned:
            log.info("delivered messages returned", extra={"messages": returned})
        for vhost in broker.vhosts.values():
            vhost.enforce_limits()
        return returned

    def report_recovery(self) -> None:
        """Log what recovery found and did (repairs first, as warnings)."""
        report_recovery(self.recovery)

    # -- serving ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start group commit and the snapshot task (inside the event loop, before clients arrive)."""
        mark = self.log.path / RUNNING_MARK
        try:
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE))
            self.log.disk.fsync_dir(str(self.log.path))
        except OSError as exc:
            if not disk_full(exc):
                raise
            # Started on a full disk: serving matters more than telling the next start about a crash.
            log.warning(
                f"cannot create {mark}: {exc.strerror or exc}; a crash before the next clean stop "
                "will not be noticed as one"
            )
        self.journal.start()
        self._snapshot_time = time.monotonic()
        if self.recovery.salvaged:
            # What salvage decided (messages dropped, snapshots started again) is in a snapshot before
            # anyone is served: a later start, without salvage, finds the same state.
            await self._periodic_snapshot()
        self._task = asyncio.create_task(self._run(), name="ottermq-store")
        self.scrubber.start()

    def status(self) -> dict[str, Any]:
        """What `ottermq ctl status` shows of the store: snapshot and reclaim outcomes, the scrub."""
        return {
            **self.snapshot_health.status("snapshot"),
            **self.reclaim_health.status("reclaim"),
            **self.scrubber.status(),
        }

    def _logged_messages(self) -> int:
        broker = self.broker
        assert broker is not None
        return sum(q.logged_count for v in broker.vhosts.values() for q in v.queues.values())

    async def _reclaim_logged(self) -> None:
        try:
            await self.reclaim()
        except Exception as exc:
            _failed("reclaiming log space", self.reclaim_health, exc, "will retry after the next snapshot")

    async def _run(self) -> None:
        options = self.options
        first = True
        while True:
            await asyncio.sleep(options.check_interval)
            journal = self.journal
            journal.check()
            contents = self.contents
            if options.message_memory:
                contents.resident_limit = content_budget(self._logged_messages(), options.message_memory)
                if contents.resident_bytes > contents.resident_limit:
                    contents.evict()
            if contents.evicted_bytes:
                contents.evicted_bytes = 0
                trim_heap()
            if journal.failed:
                continue
            if first:
                first = False
                await self._background(self._reclaim_logged())
            volume = journal.appended_bytes - self._snapshot_bytes_mark
            elapsed = time.monotonic() - self._snapshot_time
            records = self.log.end_lsn - self._snapshot_lsn
            due = volume >= options.snapshot_bytes or (elapsed >= options.snapshot_interval and records)
            # A snapshot costs O(messages held): never more often than every half of that in records, so
            # a large backlog is not rewritten for every 128 MiB that passes through.
            if due and records * 2 >= self._logged_messages():
                await self._background(self._periodic_snapshot())

    async def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` so that stopping the task does not cut it in the middle (stop waits for it)."""
        self._work = asyncio.ensure_future(work)
        await asyncio.shield(self._work)

    async def _periodic_snapshot(self) -> None:
        try:
            await self.snapshot(clean=False)
        except Exception as exc:
            _failed("snapshot", self.snapshot_health, exc, "will retry")
            self._snapshot_time = time.monotonic()

    async def snapshot(self, clean: bool) -> int:
        """Snapshot the projection as of the last append, once durable, then (unless `clean`: a stop
        should be quick, the next start reclaims) reclaim space; the LSN."""
        broker = self.broker
        assert broker is not None
        journal = self.journal
        writer = journal.writer
        if self._snapshotting or writer is None or journal.failed:
            return 0
        self._snapshotting = True
        try:
            lsn = self.log.end_lsn
            if lsn == 0 or (lsn == self._snapshot_lsn and not clean):
                return 0
            self._snapshot_bytes_mark = journal.appended_bytes
            self._snapshot_time = time.monotonic()
            started = time.monotonic()
            state = self._serialize(broker, clean)
            size = len(state)
            await writer.wait_durable(lsn)
            await asyncio.to_thread(self.log.save_snapshot, lsn, state)
            self.snapshot_health.succeeded()
            self._snapshot_lsn = lsn
            del state
            trim_heap()  # the serialized copy and its temporary lists are freed
            log.info(
                "snapshot saved",
                extra={"lsn": lsn, "bytes": size, "seconds": round(time.monotonic() - started, 3)},
            )
            if not clean:
                await self._reclaim_logged()
            return lsn
        finally:
            self._snapshotting = False

    def _serialize(self, broker: Broker, clean: bool) -> bytes:
        collecting = gc.isenabled()
        gc.disable()  # temporary lists of a million items would trigger collections for nothing
        try:
            return self._serialize_now(broker, clean)
        finally:
            if collecting:
                gc.enable()

    def _serialize_now(self, broker: Broker, clean: bool) -> bytes:
        locations = self.contents.locations
        indexes = [
            index_of(vhost.name, queue.name, queue.logged_entries(), locations, queue.delivery_state())
            for vhost in broker.vhosts.values()
            for queue in vhost.queues.values()
            if queue.durable and queue.logged_count
        ]
        return encode_snapshot(broker.durable_events(), indexes, clean)

    def live_records(self) -> LiveRecords:
        """Record keys (segment, offset) that hold a message some durable queue still has."""
        return LiveRecords(record_key(loc) for loc in self.contents.locations.values() if loc)

    async def reclaim(self) -> int:
        """Delete covered segments without live messages, compact sparse ones; bytes freed."""
        writer = self.journal.writer
        if writer is None:
            return 0
        kept = self.log.snapshots.list()
        if not kept:
            return 0
        live = self.live_records()

        # Called from Memento's planning thread (AsyncWriter.reclaim): safe, as `live` is this call's own
        # snapshot of the keys and nothing else uses it meanwhile.
        def is_live(position: RecordPosition) -> bool:
            return pack_loc(position.segment, position.offset) in live

        try:
            result = await writer.reclaim(kept[0].lsn, is_live, 0.5 if self.options.compact else 0.0)
        finally:
            # The live-key array and the copies read for compaction are freed: give the heap back.
            trim_heap()
        self.reclaim_health.succeeded()
        if result.relocated:
            self._relocated(
                {
                    pack_loc(old.segment, old.offset): pack_loc(new.segment, new.offset)
                    for old, new in result.relocated.items()
                }
            )
        if result.deleted or result.relocated:
            log.info(
                "log space reclaimed",
                extra={
                    "deleted": len(result.deleted),
                    "relocated": len(result.relocated),
                    "freed_bytes": result.freed_bytes,
                },
            )
        return result.freed_bytes

    def _relocated(self, moved: dict[int, int]) -> None:
        self.contents.relocate(moved, INDEX_MASK)

    async def stop(self, *, snapshot: bool = True) -> None:
        """Clean stop (connections already closed): snapshot (unless not `snapshot`: a follower about to
        cut its tail must not snapshot past the cut), flush, close the log."""
        await self.scrubber.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        writer = self.journal.writer
        suspended = writer is not None and writer.suspended is not None
        if writer is not None and suspended:
            # The disk is still full: one last attempt (with the gathered acks), else the log fails,
            # which also ends a snapshot or reclaim waiting for durability (it would wait forever).
            self.journal.flush_removals()
            await writer.close()
        if self._work is not None and not self._work.done():
            await asyncio.wait([self._work])
        self.journal.flush_removals()
        await self.streams.close()
        try:
            if (
                snapshot
                and writer is not None
                and not suspended
                and not self.journal.failed
                and await self.snapshot(clean=True)
            ):
                (self.log.path / RUNNING_MARK).unlink(missing_ok=True)
        except Exception as exc:
            _failed("final snapshot", self.snapshot_health, exc, "the next start replays the log")
        finally:
            if writer is not None:
                await writer.close()
            self.close()

    def close(self) -> None:
        """Close the log (releases the directory lock)."""
        try:
            self.log.close()
        except Exception as exc:
            log.error(f"closing the log failed: {exc}")


def _failed(what: str, health: TaskHealth, exc: Exception, then: str) -> None:
    """Count a failed snapshot or reclaim and log one line naming the cause (with the traceback only
    when the cause is a bug rather than the disk, the files or the data)."""
    cause = health.failed(exc)
    log.error(f"{what} failed: {cause}; {then}", exc_info=not isinstance(exc, EXPECTED_FAILURES))
