"""A stream's own log (store/streams.py): offsets through the index, retention by whole segments."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from functools import partial
from pathlib import Path

import pytest

from memento.disk import DiskIO
from ottermq.broker.stream import StreamFailed, StreamRecord
from ottermq.store import streams
from ottermq.store.stream_index import INDEX_DIR
from ottermq.store.streams import MementoStreamLog, Retention

SEGMENT = 64 << 10


def _fill(
    path: Path, count: int, retention: Retention, start_time: int = 1_000_000, step: int = 1
) -> MementoStreamLog:
    """A stream of `count` records of 100..199 bytes appended `step` ms apart, durable, opened again."""

    async def run() -> MementoStreamLog:
        stream = MementoStreamLog(path, lambda: None, retention)
        for i in range(count):
            stream.append("ex", f"k{i}", b"", b"%08d" % i * (12 + i % 13), start_time + i * step)
        assert stream.writer is not None
        await stream.writer.sync()
        await stream.aclose()
        return stream

    asyncio.run(run())
    return MementoStreamLog(path, lambda: None, retention)


def _check_reads(stream: MementoStreamLog, offsets: list[int]) -> None:
    for offset in offsets:
        records = stream.read(offset, 1)
        assert records[0].offset == offset
        assert records[0].routing_key == f"k{offset}"
        assert records[0].body == b"%08d" % offset * (12 + offset % 13)


def test_reading_at_any_offset_and_time_goes_through_the_index(tmp_path: Path) -> None:
    stream = _fill(tmp_path / "s", 5000, Retention(SEGMENT))
    try:
        assert len(stream.log.segments) > 5
        assert stream.first_offset == 0 and stream.committed_offset == 5000
        _check_reads(stream, [0, 1, 499, 2500, 4999, 1234, 3])
        assert stream.read(5000, 1) == []
        assert stream.offset_at(0) == 0
        assert stream.offset_at(1_000_000 + 3210) == 3210
        assert stream.offset_at(1_000_000 + 5000) == 5000
        # A read of many records crosses segments in order.
        offset, seen = 100, list[int]()
        while offset < 5000:
            batch = stream.read(offset, 10_000)
            seen.extend(record.offset for record in batch)
            offset = batch[-1].offset + 1
        assert seen == list(range(100, 5000))
        assert stream.size_bytes == sum(index.end for index in stream.index.segments)
    finally:
        stream.log.close()


@pytest.mark.parametrize("damage", ["missing", "wrong", "torn"])
def test_a_lost_or_wrong_index_is_rebuilt_or_walked_around(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "s"
    stream = _fill(path, 3000, Retention(SEGMENT))
    ends = [(index.end, index.last_time) for index in stream.index.segments]
    stream.log.close()
    index_dir = path / INDEX_DIR
    for name in sorted(os.listdir(index_dir)):
        file = index_dir / name
        if damage == "missing":
            file.unlink()
        elif damage == "torn":
            file.write_bytes(file.read_bytes()[:-7])
        else:  # offsets that point at the wrong records: found at read time, walked around
            data = bytearray(file.read_bytes())
            for at in range(24 + 8, len(data), 24):
                data[at : at + 8] = (int.from_bytes(data[at : at + 8], "little") + 1).to_bytes(8, "little")
            file.write_bytes(bytes(data))
    stream = MementoStreamLog(path, lambda: None, Retention(SEGMENT))
    try:
        _check_reads(stream, [0, 777, 1500, 2999])
        assert stream.offset_at(1_000_000 + 2000) == 2000
        assert [(index.end, index.last_time) for index in stream.index.segments] == ends
    finally:
        stream.log.close()


def test_retention_by_size_deletes_whole_oldest_segments(tmp_path: Path) -> None:
    path = tmp_path / "s"
    stream = _fill(path, 4000, Retention(SEGMENT, max_bytes=3 * SEGMENT))
    try:
        # At most the limit plus the segment written to; whole segments went, the oldest first.
        assert stream.size_bytes <= 4 * SEGMENT
        first = stream.first_offset
        assert first > 0 and first == stream.log.segments[0].base_lsn - 1
        assert len(os.listdir(path / "wal")) == len(stream.log.segments)
        assert len(os.listdir(path / INDEX_DIR)) == len(stream.log.segments)
        # An offset retention removed reads from the first one kept.
        assert stream.read(0, 1)[0].offset == first
        _check_reads(stream, [first, 3999])
    finally:
        stream.log.close()
    # Kept across a restart (recovery starts at the first segment kept).
    stream = MementoStreamLog(path, lambda: None, Retention(SEGMENT, max_bytes=3 * SEGMENT))
    try:
        assert stream.first_offset == first and stream.committed_offset == 4000
        _check_reads(stream, [first, 3999])
    finally:
        stream.log.close()


def test_retention_by_age_keeps_segments_with_a_recent_record(tmp_path: Path) -> None:
    path = tmp_path / "s"
    start = int(time.time() * 1000) - 200_000
    _fill(path, 3000, Retention(SEGMENT), start, step=66).log.close()  # over the last 200 s
    # Opening enforces the retention (as does every rollover).
    stream = MementoStreamLog(path, lambda: None, Retention(SEGMENT, max_age_ms=100_000))
    try:
        first = stream.first_offset
        # Every record of a deleted segment was older than 100 s; the first segment kept has a newer one.
        assert 0 < first <= 1550
        assert stream.index.segments[0].last_time >= int(time.time() * 1000) - 100_000 - 5000
        assert stream.read(0, 1)[0].offset == first
        stream.enforce_retention(start + 10_000_000)
        assert stream.log.segments[0].base_lsn == stream.log.segments[-1].base_lsn  # the active one stays
        assert stream.read(0, 1)[0].offset == stream.first_offset
    finally:
        stream.log.close()


def test_memento_inspect_decodes_stream_records(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from memento.cli import app

    _fill(tmp_path / "s", 3, Retention(SEGMENT)).log.close()
    listing = CliRunner().invoke(
        app, ["inspect", "--records", "--decode", "--decoder", "ottermq-stream", str(tmp_path / "s")]
    )
    assert listing.exit_code == 0, listing.output
    assert "stream.message" in listing.output and "offset=2 exchange=ex routing_key=k2" in listing.output


def _note(settled: list[tuple[int, bool]], offset: int, ok: bool) -> None:
    settled.append((offset, ok))


class _Failing(DiskIO):
    """Once `failing` is set: every fdatasync fails with EIO (final), or every write with ENOSPC (a full
    disk: the writer suspends and retries)."""

    def __init__(self) -> None:
        self.failing = 0

    def fdatasync(self, fd: int) -> None:
        if self.failing == errno.EIO:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().fdatasync(fd)

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        if self.failing == errno.ENOSPC:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().pwrite(fd, data, offset)


@pytest.mark.parametrize("error", [errno.EIO, errno.ENOSPC])
def test_a_write_failure_nacks_what_waits_and_refuses_appends(tmp_path: Path, error: int) -> None:
    disk = _Failing()

    async def run() -> None:
        stream = MementoStreamLog(tmp_path / "s", lambda: None, Retention(SEGMENT), disk)
        failures: list[BaseException] = []
        resumed: list[bool] = []
        stream.on_failure = failures.append
        stream.on_resumed = lambda: resumed.append(True)
        settled: list[tuple[int, bool]] = []
        offset = stream.append("", "k", b"", b"durable", 1)
        stream.when_durable(offset, lambda ok: settled.append((offset, ok)))
        assert stream.writer is not None
        await stream.writer.sync()
        disk.failing = error
        if error == errno.ENOSPC:
            stream.writer.retry_first = 0.05
        for i in range(3):
            offset = stream.append("", "k", b"", b"lost", 2 + i)
            stream.when_durable(offset, partial(_note, settled, offset))
        for _ in range(200):
            if failures:
                break
            await asyncio.sleep(0.01)
        assert settled == [(0, True), (1, False), (2, False), (3, False)]
        assert len(failures) == 1 and stream.refusing
        with pytest.raises(StreamFailed):
            stream.append("", "k", b"", b"refused", 9)
        late: list[bool] = []
        stream.when_durable(3, late.append)
        assert late == [False]
        if error == errno.ENOSPC:
            disk.failing = 0  # space is back: the writer's retry goes through, appends are taken again
            for _ in range(200):
                if resumed:
                    break
                await asyncio.sleep(0.01)
            assert resumed and not stream.refusing
            stream.append("", "k", b"", b"again", 10)
            await stream.writer.sync()
        await stream.aclose()

    asyncio.run(run())


def test_readers_at_the_end_get_the_same_records_from_memory_and_memory_stays_bounded(tmp_path: Path) -> None:
    """A reader at the end makes the log keep what is appended next (streams.TAIL_BYTES): reads served
    from there give what the file gives; a reader further behind reads the file; only the newest
    records are kept, and nothing once no reader has been at the end for TAIL_SECONDS."""
    path = tmp_path / "s"
    count = 3000

    async def run() -> list[list[StreamRecord]]:
        stream = MementoStreamLog(path, lambda: None, Retention(SEGMENT))
        assert stream.read(0, 1 << 20) == []  # at the end: the next appends are kept
        for i in range(count):
            stream.append("ex", f"k{i}", b"\x10\x00\x02", b"%08d" % i * (100 + i % 900), 1_000 + i)
            kept = stream._tail_bytes
            assert kept <= streams.TAIL_BYTES
        assert 0 < stream._tail[0].offset < count - 10  # the oldest went; the newest are read from here
        assert stream.writer is not None
        await stream.writer.sync()
        assert stream.read(count, 1) == []  # nothing durable beyond the last
        reads = [
            stream.read(offset, size) for offset in (0, 1500, count - 10, count - 1) for size in (1, 30_000)
        ]
        stream._tail_until = time.monotonic() - 1  # no reader at the end for a while: nothing kept
        stream.append("ex", "late", b"", b"x", 5_000)
        assert stream._tail == [] and stream._tail_until == 0.0
        await stream.aclose()
        return reads

    from_memory = asyncio.run(run())
    stream = MementoStreamLog(path, lambda: None, Retention(SEGMENT))
    try:
        assert stream._tail == []
        from_file = [
            stream.read(offset, size) for offset in (0, 1500, count - 10, count - 1) for size in (1, 30_000)
        ]
        # (less the record appended once nothing was kept)
        assert from_memory == [
            [record for record in records if record.offset < count] for records in from_file
        ]
        assert [len(records) for records in from_memory][-2:] == [1, 1]
    finally:
        stream.log.close()
