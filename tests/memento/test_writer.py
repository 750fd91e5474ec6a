"""AsyncWriter: group commit, durability waits, and fatal I/O errors (fault injection through DiskIO)."""

from __future__ import annotations

import asyncio
import errno
import threading
from pathlib import Path

import pytest

from memento.disk import DiskIO
from memento.errors import LogClosed, LogFailed
from memento.log import Log
from memento.writer import AsyncWriter

SEG = 16 * 1024
pytestmark = pytest.mark.timeout(30)


class CountingDisk(DiskIO):
    """Counts fdatasyncs and can hold the first one until released, to observe batching."""

    def __init__(self) -> None:
        self.syncs = 0
        self.gate = threading.Event()
        self.gate.set()

    def fdatasync(self, fd: int) -> None:
        self.gate.wait(5)
        self.syncs += 1
        super().fdatasync(fd)


class FailingDisk(DiskIO):
    """Fails with `err` once `armed` is set: on fdatasync, or on pwrite when `on_write`."""

    def __init__(self, err: int, on_write: bool = False) -> None:
        self.err = err
        self.on_write = on_write
        self.armed = False

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        if self.armed and self.on_write:
            raise OSError(self.err, "injected")
        super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        if self.armed and not self.on_write:
            raise OSError(self.err, "injected")
        super().fdatasync(fd)


def test_appends_return_lsns_at_once_and_become_durable(tmp_path: Path) -> None:
    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG) as log:
            writer = AsyncWriter(log)
            lsns = [writer.append(1, b"x" * 100) for _ in range(500)]
            assert lsns == list(range(1, 501)) and writer.durable_lsn == 0
            await writer.wait_durable(500)
            assert writer.durable_lsn == 500 == log.durable_lsn
            await writer.wait_durable(3)  # already durable: returns at once
            lsn, pos = writer.append_at(2, b"positioned")
            await writer.sync()
            assert log.read(pos).lsn == lsn
            with pytest.raises(ValueError):
                await writer.wait_durable(10_000)
            await writer.close()
        with Log.open(tmp_path, segment_size=SEG) as log:
            assert len(list(log.replay())) == 501

    asyncio.run(main())


def test_group_commit_batches_what_arrives_during_an_fsync(tmp_path: Path) -> None:
    disk = CountingDisk()

    async def main() -> None:
        with Log.open(tmp_path, disk=disk) as log:
            writer = AsyncWriter(log)
            start = disk.syncs
            disk.gate.clear()  # the first batch's fsync blocks until released
            first = writer.append(1, b"first")
            waiter = asyncio.ensure_future(writer.wait_durable(first))
            await asyncio.sleep(0.05)
            lsns = [writer.append(1, b"more") for _ in range(200)]  # all arrive during that fsync
            waiters = [asyncio.ensure_future(writer.wait_durable(lsn)) for lsn in lsns]
            disk.gate.set()
            await asyncio.gather(waiter, *waiters)
            assert disk.syncs - start == 2  # one fsync for the first, one for the 200 others
            fired: list[int] = []
            writer.when_durable(lsns[-1], lambda: fired.append(1))
            last = writer.append(1, b"cb")
            writer.when_durable(last, lambda: fired.append(2))
            await writer.sync()
            await asyncio.sleep(0)
            assert fired == [1, 2]
            await writer.close()

    asyncio.run(main())


def test_a_cancelled_waiter_does_not_cancel_the_others(tmp_path: Path) -> None:
    disk = CountingDisk()

    async def main() -> None:
        with Log.open(tmp_path, disk=disk) as log:
            writer = AsyncWriter(log)
            disk.gate.clear()
            a = asyncio.ensure_future(writer.wait_durable(writer.append(1, b"a")))
            b = asyncio.ensure_future(writer.wait_durable(writer.append(1, b"b")))
            await asyncio.sleep(0.02)
            a.cancel()
            disk.gate.set()
            await b
            assert a.cancelled()
            await writer.close()

    asyncio.run(main())


# A full disk met while writing is retried (tests/memento/test_writer_resume.py); a failed fdatasync never is.
@pytest.mark.parametrize(("err", "on_write"), [(errno.EIO, False), (errno.ENOSPC, False), (errno.EIO, True)])
def test_io_error_fails_waiters_and_later_appends(tmp_path: Path, err: int, on_write: bool) -> None:
    disk = FailingDisk(err, on_write)

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log)
            ok = writer.append(1, b"ok")
            await writer.wait_durable(ok)
            disk.armed = True
            doomed = [writer.append(1, b"lost") for _ in range(20)]
            results = await asyncio.gather(
                *(writer.wait_durable(lsn) for lsn in doomed), return_exceptions=True
            )
            assert all(isinstance(r, LogFailed) for r in results)
            assert writer.failed is not None and log.failed is not None
            assert writer.durable_lsn == ok == log.durable_lsn
            with pytest.raises(LogFailed):
                writer.append(1, b"after")
            with pytest.raises(LogFailed):
                await writer.wait_durable(doomed[0])
            with pytest.raises(LogFailed):
                log.sync()
            await writer.close()
        with Log.open(tmp_path, segment_size=SEG) as log:
            assert next(r.payload for r in log.replay()) == b"ok"

    asyncio.run(main())


def test_sync_api_fsync_failure_is_fatal(tmp_path: Path) -> None:
    disk = FailingDisk(errno.EIO)
    with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
        log.append(1, b"a")
        log.sync()
        disk.armed = True
        log.append(1, b"b")
        with pytest.raises(LogFailed, match="nothing after LSN 1 is durable"):
            log.sync()
        with pytest.raises(LogFailed):
            log.append(1, b"c")
        assert log.durable_lsn == 1


def test_rollover_under_the_writer(tmp_path: Path) -> None:
    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG) as log:
            writer = AsyncWriter(log)

            async def client(i: int) -> int:
                lsn = 0
                for j in range(40):
                    lsn = writer.append(1, f"{i}:{j}".encode() * 30)
                    await writer.wait_durable(lsn)
                return lsn

            await asyncio.gather(*(client(i) for i in range(16)))
            assert len(log.segments) > 5
            await writer.close()
        with Log.open(tmp_path, segment_size=SEG) as log:
            assert [r.lsn for r in log.replay()] == list(range(1, 641))

    asyncio.run(main())


class FailingCreate(DiskIO):
    """Fails the preallocation of new segments with ENOSPC once armed."""

    armed = False

    def preallocate(self, fd: int, size: int) -> None:
        if self.armed:
            raise OSError(errno.ENOSPC, "injected")
        super().preallocate(fd, size)


def test_enospc_during_rollover_then_close_is_fatal_and_recoverable(tmp_path: Path) -> None:
    disk = FailingCreate()

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
            writer = AsyncWriter(log)
            ok = writer.append(1, b"ok")
            await writer.wait_durable(ok)
            disk.armed = True
            lsns = [writer.append(1, b"z" * 1000) for _ in range(40)]  # forces a rollover
            waiter = writer.wait_durable(lsns[-1])
            while writer.suspended is None:  # a full disk suspends; only closing makes it final
                await asyncio.sleep(0.01)
            await writer.close()
            with pytest.raises(LogFailed, match="closed while suspended"):
                await waiter

    asyncio.run(main())
    with Log.open(tmp_path, segment_size=SEG) as log:
        records = list(log.replay())
        assert records[0].payload == b"ok"
        assert [r.lsn for r in records] == list(range(1, len(records) + 1))


def test_close_makes_pending_appends_durable(tmp_path: Path) -> None:
    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG) as log:
            writer = AsyncWriter(log)
            for i in range(300):
                writer.append(1, b"%d" % i)
            await writer.close()
            assert log.durable_lsn == 300 == writer.durable_lsn
            with pytest.raises(LogClosed):
                writer.append(1, b"late")

    asyncio.run(main())
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert [r.payload for r in log.replay()] == [b"%d" % i for i in range(300)]


def test_one_loop_wake_up_reports_a_batch_durable_and_the_next_one_taken(tmp_path: Path) -> None:
    """`on_taken_thread` hears of each batch in the writer thread, before it is written; on the loop, the
    report that a batch is durable also carries the next batch's `on_taken` (one call_soon_threadsafe
    per group commit, not two)."""
    disk = CountingDisk()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        calls: list[str] = []
        threadsafe = loop.call_soon_threadsafe

        def counting(callback, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(getattr(callback, "__name__", "?"))
            return threadsafe(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
        with Log.open(tmp_path, disk=disk) as log:
            writer = AsyncWriter(log)
            events: list[tuple[str, int]] = []
            on_thread: list[tuple[int, bool]] = []
            loop_thread = threading.current_thread()
            writer.on_taken_thread = lambda lsn: on_thread.append(
                (lsn, threading.current_thread() is not loop_thread)
            )
            writer.on_taken = lambda lsn: events.append(("taken", lsn))
            writer.on_durable = lambda lsn: events.append(("durable", lsn))
            disk.gate.clear()  # the first batch's fsync waits: the others arrive meanwhile
            first = writer.append(1, b"first")
            await asyncio.sleep(0.05)
            last = [writer.append(1, b"more") for _ in range(100)][-1]
            calls.clear()
            disk.gate.set()
            await writer.wait_durable(last)
            await asyncio.sleep(0.05)
            assert on_thread == [(first, True), (last, True)]
            assert events == [("taken", first), ("durable", first), ("taken", last), ("durable", last)]
            # After the gate: the first batch durable with the second taken, then the second durable.
            assert calls == ["_reported", "_reported"]
            await writer.close()

    asyncio.run(main())
