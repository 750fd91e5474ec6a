"""The journal under disk faults, without sockets: MementoJournal over a log whose `DiskIO` fails on demand.

Every durability callback runs exactly once: `callback` (the publisher's basic.ack) only for positions that
were really fsynced, `failed` (basic.nack) for everything pending when the log failed or suspended. After a
failure appends are refused with 541, and the log, reopened on a healthy disk, holds every acknowledged
record. A full disk (ENOSPC while writing or creating a segment) only suspends the journal: removals are
still staged, and once space returns everything staged is written in order and confirms work again.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from memento.disk import DiskIO
from memento.log import Log
from memento.segment import HEADER_SIZE
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.broker.events import MessagePublished, MessagesRemoved, message_id
from ottermq.store.codec import RECORD_TYPES, decode
from ottermq.store.journal import MementoJournal
from ottermq.store.store import LOG_DIR

BODY = b"x" * 1024


class FailingDisk(DiskIO):
    """Fails `what` ("fsync", "write" or "preallocate": creating a segment) with `code` once armed; a failed
    fsync also drops what was written since the last good one (as the kernel may drop the dirty pages)."""

    def __init__(self) -> None:
        self.what = ""
        self.code = 0
        self.hits = 0
        self._unsynced: dict[int, list[tuple[int, int]]] = {}

    def arm(self, what: str, code: int) -> None:
        self.what, self.code = what, code

    def disarm(self) -> None:
        """Space returns."""
        self.what = ""

    def _fail(self) -> None:
        self.hits += 1
        raise OSError(self.code, os.strerror(self.code))

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        # A full disk refuses new segments whether preallocated now or taken from a ready spare (whose
        # header is then written): otherwise a spare finished in the background would end the outage.
        if self.what == "write" or (self.what == "preallocate" and offset == 0 and len(data) == HEADER_SIZE):
            self._fail()
        super().pwrite(fd, data, offset)
        self._unsynced.setdefault(fd, []).append((offset, len(data)))

    def fdatasync(self, fd: int) -> None:
        if self.what == "fsync":
            for offset, size in self._unsynced.pop(fd, []):
                os.pwrite(fd, bytes(size), offset)
            self._fail()
        super().fdatasync(fd)
        self._unsynced.pop(fd, None)

    def preallocate(self, fd: int, size: int) -> None:
        if self.what == "preallocate":
            self._fail()
        super().preallocate(fd, size)


class Outcomes:
    """What each appended position was told: acked (durable) or nacked (failed)."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.nacked: list[int] = []

    def watch(self, journal: MementoJournal, position: int) -> None:
        journal.when_durable(
            position,
            lambda: self.acked.append(position),
            lambda: self.nacked.append(position),
        )

    async def settle(self, total: int, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while len(self.acked) + len(self.nacked) < total:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(wait(), timeout)


def publish_event(i: int) -> MessagePublished:
    return MessagePublished("/", ("q",), "", "q", b"\x10\x00\x02", str(i).encode() + BODY)


async def load_then_fault(
    path: Path, disk: FailingDisk, what: str, code: int, before: int, after: int, segment_size: int = 64 << 20
) -> tuple[Outcomes, MementoJournal]:
    """Append `before` events (all acked), arm the fault, append `after` more in small bursts."""
    log = Log.open(path, registry=RECORD_TYPES, disk=disk, segment_size=segment_size)
    journal = MementoJournal(log)
    journal.start()
    outcomes = Outcomes()
    try:
        for i in range(before):
            outcomes.watch(journal, journal.append(publish_event(i)))
        await outcomes.settle(before)
        assert len(outcomes.acked) == before and not outcomes.nacked
        disk.arm(what, code)
        appended = before
        for i in range(before, before + after):
            try:
                position = journal.append(publish_event(i))
            except AMQPConnectionError as exc:
                assert exc.reply_code == 541
                break
            appended += 1
            outcomes.watch(journal, position)
            if i % 20 == 0:
                await asyncio.sleep(0)  # let group commit take a batch: the fault lands mid-load
        await outcomes.settle(appended)
    finally:
        assert journal.writer is not None
        await journal.writer.close()
        log.close()
    return outcomes, journal


def recovered_lsns(path: Path) -> set[int]:
    log = Log.open(path, registry=RECORD_TYPES)
    try:
        return {record.lsn for record in log.replay()}
    finally:
        log.close()


@pytest.mark.parametrize(
    ("what", "code", "segment_size", "before", "after"),
    [
        ("fsync", errno.EIO, 64 << 20, 200, 400),
        ("fsync", errno.ENOSPC, 64 << 20, 200, 400),
        ("write", errno.EIO, 64 << 20, 200, 400),
    ],
    ids=["fsync-EIO", "fsync-ENOSPC", "write-EIO"],
)
def test_fault_nacks_pending_and_keeps_acked(
    tmp_path: Path,
    what: str,
    code: int,
    segment_size: int,
    before: int,
    after: int,
) -> None:
    path = tmp_path / LOG_DIR
    disk = FailingDisk()
    outcomes, journal = asyncio.run(load_then_fault(path, disk, what, code, before, after, segment_size))

    assert disk.hits, "the fault was never hit"
    assert journal.failed
    assert outcomes.nacked, "nothing was pending when the log failed"
    # Each position answered exactly once, and every ack precedes every nack (acks are in log order).
    assert len(set(outcomes.acked) | set(outcomes.nacked)) == len(outcomes.acked) + len(outcomes.nacked)
    assert max(outcomes.acked) < min(outcomes.nacked)
    with pytest.raises(AMQPConnectionError) as refused:
        journal.append(publish_event(-1))
    assert refused.value.reply_code == 541
    late: list[str] = []
    journal.when_durable(journal.next_position, lambda: late.append("ack"), lambda: late.append("nack"))
    assert late == ["nack"]

    # Reopened on a healthy disk: every acknowledged record is there.
    missing = set(outcomes.acked) - recovered_lsns(path)
    assert not missing, f"{len(missing)} acked records lost, e.g. {sorted(missing)[:5]}"


@pytest.mark.parametrize(
    ("what", "segment_size"),
    # 1 MiB segments: a rollover's preallocation finds the disk full; or any write does.
    [("preallocate", 1 << 20), ("write", 64 << 20)],
    ids=["rollover-ENOSPC", "write-ENOSPC"],
)
def test_a_full_disk_suspends_then_resumes(tmp_path: Path, what: str, segment_size: int) -> None:
    path = tmp_path / LOG_DIR
    disk = FailingDisk()
    outcomes, suspended, resumed = asyncio.run(suspend_then_resume(path, disk, what, segment_size))
    assert disk.hits, "the fault was never hit"
    assert suspended == [errno.ENOSPC] and len(resumed) == 1 and resumed[0] > 0
    recovered = recovered_lsns(path)
    missing = set(outcomes.acked) - recovered
    assert not missing, f"{len(missing)} acked records lost, e.g. {sorted(missing)[:5]}"
    # What was pending at the suspension was nacked, but it was staged: it is written on resume, in order.
    assert set(outcomes.nacked) <= recovered
    assert recovered == set(range(1, max(recovered) + 1))
    assert removed_ids(path) == {message_id(1), message_id(2)}


async def suspend_then_resume(
    path: Path, disk: FailingDisk, what: str, segment_size: int
) -> tuple[Outcomes, list[int | None], list[float]]:
    log = Log.open(path, registry=RECORD_TYPES, disk=disk, segment_size=segment_size)
    journal = MementoJournal(log)
    suspended: list[int | None] = []
    resumed: list[float] = []
    journal.on_suspended = lambda error: suspended.append(error.errno)
    journal.on_resumed = resumed.append
    journal.start()
    writer = journal.writer
    assert writer is not None
    outcomes = Outcomes()
    try:
        for i in range(600):
            outcomes.watch(journal, journal.append(publish_event(i)))
        await outcomes.settle(600)
        assert len(outcomes.acked) == 600
        disk.arm(what, errno.ENOSPC)
        appended = 600
        for i in range(600, 3000):
            if journal.suspended:
                break
            outcomes.watch(journal, journal.append(publish_event(i)))
            appended += 1
            if i % 20 == 0:
                await asyncio.sleep(0)
        await outcomes.settle(appended)
        assert journal.suspended and journal.failed and writer.failed is None
        assert outcomes.nacked, "nothing was pending when the journal suspended"
        assert max(outcomes.acked) < min(outcomes.nacked)
        # Nothing further is confirmed or accepted, but removals (consumer acks) are still staged.
        with pytest.raises(AMQPConnectionError, match="suspended") as refused:
            journal.append(publish_event(-1))
        assert refused.value.reply_code == 541
        late: list[str] = []
        last = journal.next_position - 1
        journal.when_durable(last, lambda: late.append("ack"), lambda: late.append("nack"))
        assert late == ["nack"]
        journal.append(MessagesRemoved("/", "q", (message_id(1), message_id(2)), "ack"))
        await asyncio.sleep(0.3)  # a retry or two, still failing
        assert journal.suspended and not resumed
        disk.disarm()
        writer.retry_now()
        await asyncio.wait_for(until_resumed(journal), 10)
        assert not journal.failed
        await writer.sync()  # what was staged while suspended (the removal) follows as the next batch
        before = len(outcomes.acked)
        for i in range(3000, 3100):
            outcomes.watch(journal, journal.append(publish_event(i)))
        await outcomes.settle(appended + 100)
        assert len(outcomes.acked) == before + 100
    finally:
        await writer.close()
        log.close()
    return outcomes, suspended, resumed


async def until_resumed(journal: MementoJournal) -> None:
    while journal.suspended:
        await asyncio.sleep(0.005)


def removed_ids(path: Path) -> set[int]:
    log = Log.open(path, registry=RECORD_TYPES)
    try:
        ids: set[int] = set()
        for record in log.replay():
            event = decode(record.type, record.payload)
            if isinstance(event, MessagesRemoved):
                ids.update(event.ids)
        return ids
    finally:
        log.close()
