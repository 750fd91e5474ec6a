"""AsyncWriter on a full disk: it suspends, keeps the batch and what is staged meanwhile, and resumes.

Faults are injected through DiskIO: ENOSPC from the preallocation of the next segment (the usual way a
preallocated log meets a full disk), or from a pwrite into a segment already created (a sparse file
system). Each test reopens the log afterwards: every record once, in LSN order. A failed fdatasync stays
final, so does closing while suspended or staging too much; a crash while suspended recovers to (at
least) the last durable record.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import threading
from pathlib import Path

import pytest

from memento.disk import DiskIO
from memento.errors import LogFailed
from memento.log import Log
from memento.segment import HEADER_SIZE
from memento.writer import AsyncWriter

SEG = 16 * 1024
pytestmark = pytest.mark.timeout(30)


class FullDisk(DiskIO):
    """Fails `what` ("preallocate", "pwrite" into a segment created since it was armed, or "fdatasync")
    with `code` the next `times` times once armed. The spare-preparing thread is left alone, so the
    counts are exact."""

    def __init__(self) -> None:
        self.what = ""
        self.code = errno.ENOSPC
        self.times = 0
        self.hits = 0
        self._created: set[int] = set()

    def arm(self, what: str, times: int, code: int = errno.ENOSPC) -> None:
        self.what, self.times, self.code = what, times, code

    def _maybe_fail(self, what: str) -> None:
        if self.what == what and self.times and threading.current_thread().name != "memento-spare":
            self.times -= 1
            self.hits += 1
            raise OSError(self.code, os.strerror(self.code))

    def preallocate(self, fd: int, size: int) -> None:
        self._maybe_fail("preallocate")
        super().preallocate(fd, size)
        if self.what:
            self._created.add(fd)

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        if fd in self._created and offset >= HEADER_SIZE:
            self._maybe_fail("pwrite")
        super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        self._maybe_fail("fdatasync")
        super().fdatasync(fd)


class Events:
    """What the writer reported to its owner, in order."""

    def __init__(self, writer: AsyncWriter) -> None:
        self.seen: list[str] = []
        self.suspended_seconds = -1.0
        writer.on_suspended = lambda error: self.seen.append(f"suspended {error.errno}")
        writer.on_resumed = self._resumed

    def _resumed(self, seconds: float) -> None:
        self.seen.append("resumed")
        self.suspended_seconds = seconds


async def until(check: object, timeout: float = 5.0) -> None:
    """Wait for `check()` to become true."""
    assert callable(check)
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def payload(i: int) -> bytes:
    return b"%06d:" % i + b"z" * 600


def assert_log_holds(path: Path, count: int) -> None:
    with Log.open(path, segment_size=SEG) as log:
        records = list(log.replay(0))
    assert [r.lsn for r in records] == list(range(1, count + 1))
    assert [r.payload for r in records] == [payload(i) for i in range(count)]


@pytest.mark.parametrize("what", ["preallocate", "pwrite"])
def test_a_full_disk_suspends_then_resumes_with_everything(tmp_path: Path, what: str) -> None:
    disk = FullDisk()

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log, retry_first=0.01, retry_max=0.05)
            events = Events(writer)
            first = writer.append(1, payload(0))
            await writer.wait_durable(first)
            disk.arm(what, 6)
            lsns = [writer.append(1, payload(i)) for i in range(1, 60)]  # several rollovers
            waiters = [writer.wait_durable(lsn) for lsn in lsns]
            await until(lambda: writer.suspended is not None)
            assert writer.suspended is not None and writer.suspended.errno == errno.ENOSPC
            assert writer.failed is None
            # Appends keep staging while suspended, and their records are readable from memory.
            more = [writer.append(1, payload(i)) for i in range(60, 80)]
            assert log.read(log.last_position).payload == payload(79)
            await asyncio.wait_for(asyncio.gather(*waiters, writer.wait_durable(more[-1])), 10)
            assert disk.hits == 6 and disk.times == 0
            assert writer.suspended is None and writer.failed is None
            assert events.seen == ["suspended 28", "resumed"]
            assert events.suspended_seconds > 0
            assert writer.durable_lsn == 80 == log.durable_lsn
            await writer.close()

    asyncio.run(main())
    assert_log_holds(tmp_path, 80)
    assert not list((tmp_path / "wal").glob("*.tmp"))


def test_retry_now_skips_the_backoff(tmp_path: Path) -> None:
    disk = FullDisk()

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log, retry_first=60.0, retry_max=60.0)  # only retry_now gets it going
            disk.arm("preallocate", 1)
            lsns = [writer.append(1, payload(i)) for i in range(40)]
            await until(lambda: writer.suspended is not None)
            waiter = writer.wait_durable(lsns[-1])
            await asyncio.sleep(0.05)
            assert not waiter.done()  # memento's waiters stay pending while suspended
            writer.retry_now()
            await asyncio.wait_for(waiter, 5)
            await writer.close()

    asyncio.run(main())
    assert_log_holds(tmp_path, 40)


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_a_failed_fdatasync_stays_final(tmp_path: Path, code: int) -> None:
    disk = FullDisk()

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log, retry_first=0.01)
            events = Events(writer)
            ok = writer.append(1, payload(0))
            await writer.wait_durable(ok)
            disk.arm("fdatasync", 1, code)
            lost = writer.append(1, payload(1))
            with pytest.raises(LogFailed):
                await writer.wait_durable(lost)
            assert events.seen == []  # never suspended: final at once
            with pytest.raises(LogFailed):
                writer.append(1, payload(2))
            await writer.close()

    asyncio.run(main())
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert [r.payload for r in log.replay(0)][:1] == [payload(0)]


def test_a_failed_fdatasync_while_suspended_is_final(tmp_path: Path) -> None:
    disk = FullDisk()

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log, retry_first=0.01, retry_max=0.01)
            lsns = [writer.append(1, payload(i)) for i in range(40)]
            disk.arm("preallocate", 1_000_000)
            waiter = writer.wait_durable(lsns[-1])
            await until(lambda: writer.suspended is not None)
            disk.arm("fdatasync", 1_000_000, errno.EIO)  # the next attempt gets as far as a sync
            with pytest.raises(LogFailed):
                await asyncio.wait_for(waiter, 5)
            assert writer.suspended is None and writer.failed is not None
            await writer.close()

    asyncio.run(main())


def test_too_much_staged_while_suspended_is_final(tmp_path: Path) -> None:
    disk = FullDisk()

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log, retry_first=0.01, retry_max=0.01, staging_limit=64 * 1024)
            disk.arm("preallocate", 1_000_000)
            lsns = [writer.append(1, payload(i)) for i in range(40)]
            await until(lambda: writer.suspended is not None)
            while writer.failed is None:
                writer.append(1, payload(0))
                await asyncio.sleep(0.001)
            with pytest.raises(LogFailed, match="over the 65536 B limit"):
                await writer.wait_durable(lsns[-1])
            await writer.close()

    asyncio.run(main())


def test_a_crash_while_suspended_recovers_to_the_last_durable_record(tmp_path: Path) -> None:
    live = tmp_path / "live"
    crashed = tmp_path / "crashed"
    disk = FullDisk()

    async def main() -> int:
        with Log.open(live, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log, retry_first=0.01, retry_max=0.05)
            durable = writer.append(1, payload(0))
            for i in range(1, 10):
                durable = writer.append(1, payload(i))
            await writer.wait_durable(durable)
            # The rollover seals the first segment and creates the next, whose records are never written.
            disk.arm("pwrite", 1_000_000)
            for i in range(10, 60):
                writer.append(1, payload(i))
            await until(lambda: writer.suspended is not None)
            await asyncio.sleep(0.05)  # a few retries
            # What a crash leaves: the files as they are now (the page cache is kept by the kernel).
            shutil.copytree(live, crashed, ignore=shutil.ignore_patterns("LOCK"))
            disk.arm("", 0)
            await writer.close()
            return durable

    durable = asyncio.run(main())
    assert_log_holds(live, 60)
    with Log.open(crashed, segment_size=SEG) as log:
        records = list(log.replay(0))
        assert log.recovery_report.status in ("clean", "repairable")
        assert len(log.segments) >= 2  # the sealed one and the one created while suspended
        end = log.end_lsn
    assert end >= durable
    assert [r.lsn for r in records] == list(range(1, end + 1))
    assert [r.payload for r in records] == [payload(i) for i in range(end)]
