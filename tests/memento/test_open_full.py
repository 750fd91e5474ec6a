"""Opening a log on a full disk: recovery needs a new segment (fresh directory, or the last segment sealed
by a crash mid-rollover) and there is no room for it.

The log opens all the same, with everything recovered readable; the creation of the segment becomes the
first flush's work, so the AsyncWriter starts suspended (as after any rollover that met a full disk),
stages what is appended, and resumes by itself once space returns. Faults come from FillableDisk (the
preallocation of a new segment fails with ENOSPC while `full`) and from a real small tmpfs when mounting
is permitted.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from memento.disk import DiskIO
from memento.errors import LogFailed
from memento.log import Log
from memento.writer import AsyncWriter
from tests.memento.helpers import SEG_SIZE, FillableDisk, segment_bytes, wal_files, write_segments

pytestmark = pytest.mark.timeout(30)


async def until(check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def records(path: Path) -> list[bytes]:
    with Log.open(path, segment_size=SEG_SIZE) as log:
        return [r.payload for r in log.replay(0)]


def crashed_mid_rollover(root: Path) -> None:
    """Three records in a segment sealed by a rollover whose next segment was never created."""
    write_segments(root, [(1, 1, segment_bytes(1, 1, [b"a", b"b", b"c"], size=SEG_SIZE, seal=True))])


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "sealed-tail"])
def test_a_log_opens_on_a_full_disk_and_resumes_when_space_returns(tmp_path: Path, fresh: bool) -> None:
    if not fresh:
        crashed_mid_rollover(tmp_path)
    disk = FillableDisk()
    disk.full = True
    seen: list[str] = []

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG_SIZE, disk=disk) as log:
            assert any("no room for the next segment" in w for w in log.recovery_report.warnings)
            assert log.end_lsn == (0 if fresh else 3)
            assert [r.payload for r in log.replay()] == ([] if fresh else [b"a", b"b", b"c"])
            writer = AsyncWriter(log, retry_first=0.01, retry_max=0.05)
            writer.on_suspended = lambda exc: seen.append(f"suspended {exc.errno}")
            writer.on_resumed = lambda _s: seen.append("resumed")
            await until(lambda: writer.suspended is not None)
            assert writer.failed is None
            lsn = writer.append(1, b"staged while full")
            assert log.read(log.last_position).payload == b"staged while full"
            await asyncio.sleep(0.1)
            assert writer.durable_lsn == lsn - 1 and writer.suspended is not None
            disk.full = False
            await asyncio.wait_for(writer.wait_durable(lsn), 10)
            assert writer.suspended is None and writer.failed is None
            await writer.close()

    asyncio.run(main())
    assert seen == [f"suspended {errno.ENOSPC}", "resumed"]
    assert records(tmp_path) == ([] if fresh else [b"a", b"b", b"c"]) + [b"staged while full"]
    assert not list((tmp_path / "wal").glob("*.tmp"))


def test_a_log_opened_on_a_full_disk_closes_without_the_space(tmp_path: Path) -> None:
    crashed_mid_rollover(tmp_path)
    disk = FillableDisk()
    disk.full = True
    with Log.open(tmp_path, segment_size=SEG_SIZE, disk=disk) as log:
        assert log.end_lsn == 3
    assert len(wal_files(tmp_path)) == 1
    assert records(tmp_path) == [b"a", b"b", b"c"]


def test_records_appended_without_a_writer_fail_the_sync_on_a_full_disk(tmp_path: Path) -> None:
    disk = FillableDisk()
    disk.full = True
    log = Log.open(tmp_path, segment_size=SEG_SIZE, disk=disk)
    log.append(1, b"x")
    with pytest.raises(LogFailed, match="No space left"):
        log.sync()
    log.close()


class BrokenDisk(DiskIO):
    def preallocate(self, fd: int, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_other_errors_creating_the_segment_still_refuse_the_open(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        Log.open(tmp_path, segment_size=SEG_SIZE, disk=BrokenDisk())
    assert info.value.errno == errno.EIO


def test_a_log_opens_on_a_file_system_smaller_than_a_segment(tiny_tmpfs: Path) -> None:
    root = tiny_tmpfs / "log"

    async def main() -> None:
        with Log.open(root, segment_size=64 << 20) as log:
            writer = AsyncWriter(log, retry_first=0.01, retry_max=0.05)
            await until(lambda: writer.suspended is not None)
            assert writer.suspended is not None and writer.suspended.errno == errno.ENOSPC
            await writer.close()
            assert log.failed is None  # nothing was staged: stopping without the segment loses nothing

    asyncio.run(main())
    assert not wal_files(root)


class NoDescriptors(DiskIO):
    """Creating a segment fails with EMFILE while `exhausted` (clients hold every descriptor)."""

    def __init__(self) -> None:
        self.exhausted = False

    def preallocate(self, fd: int, size: int) -> None:
        if self.exhausted:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        super().preallocate(fd, size)


def test_running_out_of_descriptors_at_a_rollover_suspends_instead_of_failing(tmp_path: Path) -> None:
    disk = NoDescriptors()

    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG_SIZE, disk=disk) as log:
            writer = AsyncWriter(log, retry_first=0.01, retry_max=0.05)
            disk.exhausted = True
            lsns = [writer.append(1, b"r" * 1000) for _ in range(100)]  # a rollover
            await until(lambda: writer.suspended is not None)
            assert writer.suspended is not None and writer.suspended.errno == errno.EMFILE
            assert writer.failed is None
            disk.exhausted = False
            await asyncio.wait_for(writer.wait_durable(lsns[-1]), 10)
            await writer.close()

    asyncio.run(main())
    assert len(records(tmp_path)) == 100


class NoRoomForQuarantine(DiskIO):
    """Writing into quarantine/ fails with ENOSPC (the log's own preallocated files need no new room)."""

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        if "/quarantine/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().pwrite(fd, data, offset)


def test_a_torn_tail_that_cannot_be_quarantined_is_refused_by_name_and_kept(tmp_path: Path) -> None:
    data = bytearray(segment_bytes(1, 1, [b"a", b"b"], size=SEG_SIZE))
    end = len(segment_bytes(1, 1, [b"a", b"b"], size=SEG_SIZE).rstrip(b"\0"))
    data[end : end + 48] = b"\xc8\x00\x00\x00\xde\xad\xbe\xef" + b"\x01" * 40  # a torn write
    write_segments(tmp_path, [(1, 1, bytes(data))])
    with pytest.raises(OSError) as info:
        Log.open(tmp_path, segment_size=SEG_SIZE, disk=NoRoomForQuarantine())
    assert info.value.errno == errno.ENOSPC
    assert "/quarantine/" in str(info.value.filename) and "48 damaged bytes" in str(info.value)
    assert not list((tmp_path / "quarantine").iterdir())  # no empty quarantine file left behind
    assert wal_files(tmp_path)[0].read_bytes() == bytes(data)  # nothing cut
    assert records(tmp_path) == [b"a", b"b"]  # once there is room, the repair goes through
