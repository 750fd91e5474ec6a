"""The sync Log API: append/sync/read/replay, rollover, locking, recovery on open, snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memento.errors import CorruptRecord, LogClosed, LogLocked, RecoveryRefused, UnsupportedVersion
from memento.log import QUARANTINE_DIR, WAL_DIR, Log
from memento.record import HEAD_SIZE, RecordPosition
from memento.segment import FORMAT_VERSION, HEADER_SIZE, decode_header, encode_header, parse_name

from .helpers import crashed, flip, patch, segment_bytes, wal_files, write_segments

SEG = 4096


def fill(log: Log, count: int, size: int = 100) -> list[bytes]:
    payloads = [bytes([i % 251]) * (size + i % 7) for i in range(count)]
    for payload in payloads:
        log.append(1, payload)
    log.sync()
    return payloads


def test_append_sync_reopen_replay(tmp_path: Path) -> None:
    with Log.open(tmp_path) as log:
        assert log.append(1, b"a") == 1
        assert log.append(2, b"bb", flags=3) == 2
        assert log.durable_lsn == 0 and log.end_lsn == 2
        log.sync()
        assert log.durable_lsn == 2
    with Log.open(tmp_path) as log:
        records = list(log.replay())
        assert [(r.lsn, r.type, r.flags, r.payload) for r in records] == [(1, 1, 0, b"a"), (2, 2, 3, b"bb")]
        assert log.recovery_report.status == "clean" and not log.recovery_report.repaired
        assert log.append(1, b"c") == 3
        assert [r.payload for r in log.replay(after_lsn=2)] == [b"c"]


def test_rollover_creates_named_preallocated_segments(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        payloads = fill(log, 120)
        files = wal_files(tmp_path)
        assert len(files) > 2
        for i, path in enumerate(files):
            seq, base = parse_name(path.name) or (0, 0)
            assert seq == i + 1
            header = decode_header(path.read_bytes())
            assert not isinstance(header, str) and (header.seq, header.base_lsn) == (seq, base)
            assert path.stat().st_size == SEG
        assert not list((tmp_path / WAL_DIR).glob("*.tmp"))
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert [r.payload for r in log.replay()] == payloads
        assert [r.lsn for r in log.replay()] == list(range(1, 121))


def test_read_by_position_written_and_staged(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        positions = []
        for i in range(60):
            log.append(1, str(i).encode() * 20)
            positions.append(log.last_position)
        staged = log.read(positions[-1])  # not yet written: served from memory
        assert staged.lsn == 60 and staged.payload == b"59" * 20
        log.sync()
        for i, pos in enumerate(positions):
            record = log.read(pos)
            assert (record.lsn, record.payload, record.position) == (i + 1, str(i).encode() * 20, pos)
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.read(positions[33]).lsn == 34
        with pytest.raises(CorruptRecord, match="no segment 99"):  # damage as a reader sees it
            log.read(RecordPosition(99, HEADER_SIZE))


def test_record_larger_than_a_segment(tmp_path: Path) -> None:
    big = os.urandom(3 * SEG)
    with Log.open(tmp_path, segment_size=SEG) as log:
        log.append(1, b"small")
        lsn = log.append(1, big)
        pos = log.last_position
        log.append(1, b"after")
        log.sync()
        assert log.read(pos).payload == big
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert [r.lsn for r in log.replay()] == [1, lsn, 3]


def test_append_validation(tmp_path: Path) -> None:
    with Log.open(tmp_path, registry={1, 2}) as log:
        for rtype in (0, 3, 0xFF):
            with pytest.raises(ValueError):
                log.append(rtype, b"")
        with pytest.raises(ValueError):
            log.append(1, b"", flags=0x80)
    with pytest.raises(LogClosed):
        log.append(1, b"")


def test_second_opener_gets_a_clear_error(tmp_path: Path) -> None:
    with Log.open(tmp_path), pytest.raises(LogLocked, match="locked by process"):
        Log.open(tmp_path)
    Log.open(tmp_path).close()  # released on close


def test_tmp_segment_is_dropped(tmp_path: Path) -> None:
    with Log.open(tmp_path) as log:
        fill(log, 3)
    (tmp_path / WAL_DIR / "0000000000000002-0000000000000004.wal.tmp").write_bytes(b"partial")
    with Log.open(tmp_path) as log:
        assert log.recovery_report.dropped_tmp == ["0000000000000002-0000000000000004.wal.tmp"]
        assert len(list(log.replay())) == 3


def test_crash_after_seal_before_next_segment(tmp_path: Path) -> None:
    write_segments(tmp_path, [(1, 1, segment_bytes(1, 1, [b"a", b"b"], size=SEG, seal=True))])
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.end_lsn == 2
        assert log.append(1, b"c") == 3
    names = [p.name for p in wal_files(tmp_path)]
    assert names[1].startswith("0000000000000002-0000000000000003")
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert [r.payload for r in log.replay()] == [b"a", b"b", b"c"]


def test_torn_tail_is_quarantined_truncated_and_reported(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        fill(log, 5, size=50)
        last = log.last_position
    crashed(tmp_path)
    path = wal_files(tmp_path)[-1]
    patch(path, last.offset + HEAD_SIZE + 3, b"\xff\xfe")
    with Log.open(tmp_path, segment_size=SEG) as log:
        report = log.recovery_report
        assert report.status == "repairable" and report.repaired
        assert "torn tail" in report.warnings[0] and path.name in report.warnings[0]
        assert len(report.quarantined) == 1 and (tmp_path / QUARANTINE_DIR).is_dir()
        assert Path(report.quarantined[0]).stat().st_size > 0
        assert [r.lsn for r in log.replay()] == [1, 2, 3, 4]
        assert path.stat().st_size == SEG
        assert path.read_bytes()[last.offset :] == bytes(SEG - last.offset)
        assert log.append(1, b"new") == 5
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.recovery_report.status == "clean"
        assert [r.payload for r in log.replay()][-1] == b"new"


def test_truncated_file_is_preallocated_again(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        fill(log, 5, size=50)
        last = log.last_position
    crashed(tmp_path)
    path = wal_files(tmp_path)[-1]
    os.truncate(path, last.offset + 10)
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.end_lsn == 4 and path.stat().st_size == SEG


def test_corruption_before_valid_records_is_refused_with_location(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        log.append(1, b"first")
        second = log.append(1, b"second")
        pos = log.last_position
        log.append(1, b"third")
    path = wal_files(tmp_path)[-1]
    flip(path, pos.offset + HEAD_SIZE + 1)
    with pytest.raises(RecoveryRefused) as info:
        Log.open(tmp_path, segment_size=SEG)
    err = info.value
    assert (err.segment, err.offset, err.lsn) == (path.name, pos.offset, second)
    assert path.name in str(err) and f"offset {pos.offset}" in str(err) and f"LSN {second}" in str(err)
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        assert log.recovery_report.salvaged
        assert [r.payload for r in log.replay()] == [b"first"]
        assert log.append(1, b"again") == 2
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert [r.payload for r in log.replay()] == [b"first", b"again"]


def test_damage_in_sealed_segment_refused_and_salvaged(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        fill(log, 100)
    files = wal_files(tmp_path)
    flip(files[0], HEADER_SIZE + 5 * (HEAD_SIZE + 100) + 30)
    with pytest.raises(RecoveryRefused, match=files[0].name):
        Log.open(tmp_path, segment_size=SEG)
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        assert log.end_lsn == 5
        assert len(wal_files(tmp_path)) == 1
        assert len(list((tmp_path / QUARANTINE_DIR).iterdir())) == len(files)  # the cut bytes + whole files


def test_missing_middle_segment_is_refused(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        fill(log, 100)
    files = wal_files(tmp_path)
    files[1].unlink()
    with pytest.raises(RecoveryRefused, match="missing"):
        Log.open(tmp_path, segment_size=SEG)


def test_unknown_record_type_and_future_version(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        log.append(7, b"x")
    with pytest.raises(UnsupportedVersion, match="unknown record type 7"):
        Log.open(tmp_path, segment_size=SEG, registry={1})
    Log.open(tmp_path, segment_size=SEG, registry={1, 7}).close()
    path = wal_files(tmp_path)[0]
    patch(path, 0, encode_header(1, 1, SEG, version=FORMAT_VERSION + 1))
    with pytest.raises(UnsupportedVersion, match="version"):
        Log.open(tmp_path, segment_size=SEG)


def test_snapshot_replay_starts_after_it(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        fill(log, 50)
        with pytest.raises(ValueError):
            log.save_snapshot(51, b"state")
        log.save_snapshot(40, b"state at 40")
        fill(log, 5)
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.snapshot is not None and log.snapshot.state == b"state at 40"
        assert [r.lsn for r in log.replay()] == list(range(41, 56))


def test_snapshot_beyond_end_of_log(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        fill(log, 5)
        log.save_snapshot(5, b"s")
    path = wal_files(tmp_path)[0]
    patch(path, HEADER_SIZE, bytes(SEG - HEADER_SIZE))  # the log lost everything
    with pytest.raises(RecoveryRefused, match="beyond the end of the log"):
        Log.open(tmp_path, segment_size=SEG)
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        assert log.append(1, b"x") == 6
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert [r.lsn for r in log.replay()] == [6]


def test_full_check_scans_segments_covered_by_the_snapshot(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG) as log:
        fill(log, 100)
        log.save_snapshot(100, b"s")
        fill(log, 1)
    first = wal_files(tmp_path)[0]
    flip(first, HEADER_SIZE + 30)
    Log.open(tmp_path, segment_size=SEG).close()  # covered by the snapshot: only its header is read
    with pytest.raises(RecoveryRefused, match=first.name):
        Log.open(tmp_path, segment_size=SEG, full_check=True)


def test_damaged_snapshot_store_falls_back_to_a_full_replay_of_a_whole_log(tmp_path: Path) -> None:
    state = os.urandom(64 * 1024)  # incompressible: stored verbatim, so it can be found and damaged
    with Log.open(tmp_path) as log:
        fill(log, 3)
        log.save_snapshot(3, state)
    mdb = tmp_path / "snapshots" / "data.mdb"
    at = mdb.read_bytes().find(state[1000:1032])
    assert at > 0
    flip(mdb, at)
    # The log holds every record from LSN 1: a full replay loses nothing, so it is not refused.
    with Log.open(tmp_path) as log:
        assert log.snapshot is None and [r.lsn for r in log.replay()] == [1, 2, 3]
        assert any("replaying the whole log" in w for w in log.recovery_report.warnings)
        assert log.recovery_report.quarantined and log.snapshots.status != "damaged"
