"""Space reclamation: deleting covered dead segments, compacting sparse ones, duplicates-not-loss."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from memento import reclaim as reclaim_module
from memento.disk import DiskIO
from memento.errors import CorruptRecord
from memento.log import Log
from memento.record import FLAG_ORIGIN, FLAG_RELOCATED, RecordPosition, original
from memento.writer import AsyncWriter

from .helpers import wal_files

SEG = 4096


def fill(log: Log, count: int) -> list[RecordPosition]:
    positions = []
    for i in range(count):
        log.append(1, b"%05d" % i * 20)
        positions.append(log.last_position)
    log.sync()
    return positions


def test_nothing_reclaimed_above_covered_lsn_or_when_live(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = fill(log, 100)
        before = len(wal_files(tmp_path))
        result = log.reclaim(0, lambda pos: False)
        assert result.deleted == () and len(wal_files(tmp_path)) == before
        with pytest.raises(ValueError, match="beyond the newest snapshot"):
            log.reclaim(100, lambda pos: False)
        log.save_snapshot(100, b"s")
        result = log.reclaim(100, lambda pos: True)
        assert result.deleted == () and result.relocated == {}
        assert log.read(positions[0]).lsn == 1


def test_dead_covered_prefix_is_deleted(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = fill(log, 100)
        files = wal_files(tmp_path)
        live_from = positions[60]
        log.save_snapshot(100, b"state")
        result = log.reclaim(100, lambda pos: pos >= live_from)
        assert result.deleted and result.freed_bytes == SEG * len(result.deleted)
        assert [f.name for f in files[: len(result.deleted)]] == list(result.deleted)
        assert all(s.seq >= live_from.segment for s in log.segments)
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.recovery_report.status == "clean"
        assert log.read(positions[60]).lsn == 61


def test_sparse_segments_are_compacted_then_deleted(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = fill(log, 100)
        keep = {positions[3], positions[50]}  # one live record in two old segments
        index = {p: log.read(p).payload for p in keep}
        lsns = {p: log.read(p).lsn for p in keep}
        log.save_snapshot(100, b"state")
        result = log.reclaim(100, lambda pos: pos in index)
        assert set(result.relocated) == keep and not result.deleted
        for old, new in result.relocated.items():
            record = log.read(new)
            assert original(record) == (lsns[old], index[old])
            assert record.flags & FLAG_RELOCATED and record.lsn > 100
            index[new] = index.pop(old)
        last_copy = log.end_lsn
        # The copies are not covered yet: the compacted segments stay.
        assert log.reclaim(100, lambda pos: pos in index).deleted == ()
        log.save_snapshot(last_copy, b"state after copies")
        result = log.reclaim(last_copy, lambda pos: pos in index)
        assert result.deleted
        first_seq = log.segments[0].seq
        assert all(pos.segment >= first_seq for pos in index)
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.recovery_report.status == "clean"
        assert sorted(original(log.read(p))[1] for p in index) == sorted(index.values())


def test_crash_after_copy_leaves_duplicates_not_loss(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = fill(log, 100)
        log.save_snapshot(100, b"state")
        result = log.reclaim(100, lambda pos: pos == positions[3])
        assert result.relocated
    # "Crash" before the caller snapshots: the original and its copy are both there.
    with Log.open(tmp_path, segment_size=SEG) as log:
        payloads = [original(r)[1] for r in log.replay(after_lsn=0)]
        assert payloads.count(b"%05d" % 3 * 20) == 2
        assert log.read(positions[3]).lsn == 4


def test_reclaim_through_the_async_writer(tmp_path: Path) -> None:
    async def main() -> None:
        with Log.open(tmp_path, segment_size=SEG) as log:
            writer = AsyncWriter(log)
            positions = []
            for i in range(100):
                positions.append(writer.append_at(1, b"%05d" % i * 20)[1])
            await writer.sync()
            log.save_snapshot(100, b"s")
            live = {positions[2]}
            result = await writer.reclaim(100, lambda pos: pos in live)
            assert list(result.relocated) == [positions[2]]
            new = result.relocated[positions[2]]
            assert original(log.read(new)) == (3, b"%05d" % 2 * 20)
            log.save_snapshot(log.durable_lsn, b"s")
            result = await writer.reclaim(log.durable_lsn, lambda pos: pos == new)
            assert result.deleted
            await writer.close()

    asyncio.run(main())


class FailingUnlinkSync(DiskIO):
    """Fails the directory sync that follows segment deletion, as a crash there would."""

    armed = False

    def fsync_dir(self, path: str) -> None:
        if self.armed:
            raise OSError(errno.EIO, "injected")
        super().fsync_dir(path)


def test_failure_while_deleting_loses_nothing(tmp_path: Path) -> None:
    disk = FailingUnlinkSync()
    with Log.open(tmp_path, segment_size=SEG, disk=disk) as log:
        positions = fill(log, 100)
        keep = positions[70]
        log.save_snapshot(100, b"state")
        disk.armed = True
        with pytest.raises(OSError):
            log.reclaim(100, lambda pos: pos == keep)
        disk.armed = False
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.read(keep).payload == b"%05d" % 70 * 20
        assert next(r.lsn for r in log.replay(after_lsn=70)) == 71


def test_sparse_segment_relocates_exactly_its_live_records_and_full_one_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny scan window makes headers straddle window ends and records outgrow the window.
    monkeypatch.setattr(reclaim_module, "WINDOW", 64)
    monkeypatch.setattr(reclaim_module, "READ_BATCH", 200)  # copies read back one or two at a time
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = fill(log, 100)
        by_seg: dict[int, list[RecordPosition]] = {}
        for pos in positions:
            by_seg.setdefault(pos.segment, []).append(pos)
        first, sparse_seg, full_seg = sorted(by_seg)[:3]
        sparse_live = set(by_seg[sparse_seg][1::4])  # a quarter of its records: sparse
        dense_live = {pos for i, pos in enumerate(by_seg[first]) if i % 4}  # three quarters: dense
        live = sparse_live | set(by_seg[full_seg]) | dense_live
        asked: list[RecordPosition] = []

        def is_live(pos: RecordPosition) -> bool:
            asked.append(pos)
            return pos in live

        log.save_snapshot(100, b"state")
        result = log.reclaim(100, is_live)
        assert result.deleted == ()
        # The first segment is dense (3/4 live); the third is fully live: both stay put.
        assert set(result.relocated) == sparse_live
        for old, new in result.relocated.items():
            copy = log.read(new)
            was = log.read(old)
            assert original(copy) == (was.lsn, was.payload) and copy.type == was.type
            assert copy.flags == was.flags | FLAG_RELOCATED | FLAG_ORIGIN
        assert asked == sorted(asked)  # ascending, as the store's LiveRecords cursor wants
        # The fully live segment was given up on before its end: no need to ask about every record.
        assert by_seg[full_seg][-1] not in asked
        # Compacted once: a second call copies nothing again.
        assert log.reclaim(100, is_live).relocated == {}


def test_scan_reports_damage_in_a_header(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = fill(log, 100)
        log.save_snapshot(100, b"state")
        victim = positions[5]
        path = next(f for f in wal_files(tmp_path) if int(f.name.split("-")[0], 16) == victim.segment)
        with open(path, "r+b") as f:
            f.seek(victim.offset + 12)  # the LSN field
            f.write(b"\xff" * 8)
        with pytest.raises(CorruptRecord, match="damaged"):
            log.reclaim(100, lambda pos: False)


def test_a_copy_of_a_copy_keeps_the_first_original(tmp_path: Path) -> None:
    """Compaction may move a record twice: its copies always name the LSN it was first written at, which
    is what a reader that kept that LSN checks (the store's message ids)."""
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = fill(log, 100)
        log.save_snapshot(100, b"state")
        first = log.reclaim(100, lambda pos: pos == positions[3]).relocated[positions[3]]
        fill(log, 100)  # push the copy into an old, sparse segment of its own
        log.save_snapshot(log.durable_lsn, b"state")
        second = log.reclaim(log.durable_lsn, lambda pos: pos == first).relocated[first]
        copy = log.read(second)
        assert copy.lsn > log.read(first).lsn > 100
        assert original(copy) == (4, b"%05d" % 3 * 20)
