"""The log's identity (IDENTITY, the id in segment headers and in the snapshot store) and its high-water mark
(MARK: newest segment created, clean stop): what is refused, what salvage accepts, which crashes are fine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from memento.errors import RecoveryRefused
from memento.identity import (
    IDENTITY_FILE,
    MARK_FILE,
    MARK_SLOT_AT,
    Mark,
    MarkFile,
    decode_mark,
    encode_mark_slot,
    read_identity,
    read_mark,
)
from memento.inspect import inspect_log
from memento.log import QUARANTINE_DIR, Log
from memento.segment import decode_header

from .helpers import crashed, patch, segment_bytes, wal_files, write_segments

SEG = 4096
ID = b"0123456789abcdef"
OTHER = b"fedcba9876543210"


def make(path: Path, count: int, *, log_id: bytes = ID, snapshot_at: int | None = None) -> None:
    with Log.open(path, segment_size=SEG, log_id=log_id) as log:
        for i in range(1, count + 1):
            log.append(1, b"record %d " % i * 4)
        log.sync()
        if snapshot_at is not None:
            log.save_snapshot(snapshot_at, b"state")


def test_a_new_log_writes_its_id_everywhere(tmp_path: Path) -> None:
    make(tmp_path, 100, snapshot_at=50)
    assert read_identity(tmp_path) == ID
    for path in wal_files(tmp_path):
        header = decode_header(path.read_bytes()[:64])
        assert not isinstance(header, str) and header.log_id == ID and header.version == 3
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.log_id == ID and log.snapshots.recorded_id() == ID
    fresh = tmp_path / "random"
    with Log.open(fresh, segment_size=SEG) as log:
        random_id = log.log_id
    assert len(random_id) == 16 and random_id != bytes(16) and read_identity(fresh) == random_id


def test_mark_names_each_new_segment_before_its_records_are_durable_and_the_clean_stop(
    tmp_path: Path,
) -> None:
    with Log.open(tmp_path, segment_size=SEG, log_id=ID) as log:
        mark = read_mark(tmp_path)
        assert isinstance(mark, Mark) and mark.clean_lsn is None and mark.newest_seq == 1
        for i in range(200):
            log.append(1, b"x" * 40)
            log.sync()
            newest = log.segments[-1]
            mark = read_mark(tmp_path)
            assert isinstance(mark, Mark)
            assert (mark.newest_seq, mark.newest_base) == (newest.seq, newest.base_lsn), i
        assert len(log.segments) > 3
    mark = read_mark(tmp_path)
    assert isinstance(mark, Mark) and mark.clean_lsn == 200


def test_a_torn_mark_slot_leaves_the_previous_state(tmp_path: Path) -> None:
    make(tmp_path, 10)
    mark = read_mark(tmp_path)
    assert isinstance(mark, Mark)
    raw = (tmp_path / MARK_FILE).read_bytes()
    newest_at = MARK_SLOT_AT[mark.generation % 2]
    torn = bytearray(raw)
    torn[newest_at + 20] ^= 0xFF
    previous = decode_mark(bytes(torn))
    assert isinstance(previous, Mark) and previous.generation == mark.generation - 1
    both = bytearray(torn)
    both[MARK_SLOT_AT[(mark.generation + 1) % 2] + 20] ^= 0xFF
    assert isinstance(decode_mark(bytes(both)), str)
    assert decode_mark(encode_mark_slot(mark).ljust(1024, b"\0")) == mark


def test_a_foreign_segment_is_refused_naming_it_and_both_ids(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    make(mine, 260)
    make(theirs, 260, log_id=OTHER)
    crashed(mine)
    victim = wal_files(mine)[2]
    shutil.copyfile(wal_files(theirs)[2], victim)
    with pytest.raises(RecoveryRefused) as info:
        Log.open(mine, segment_size=SEG)
    assert victim.name in str(info.value) and ID.hex() in str(info.value) and OTHER.hex() in str(info.value)
    assert info.value.segment == victim.name
    assert inspect_log(mine).exit_code == 2
    with Log.open(mine, segment_size=SEG, salvage=True) as log:
        assert log.end_lsn == int(victim.name.split("-")[1].split(".")[0], 16) - 1
        assert any(victim.name in q for q in log.recovery_report.quarantined)
    with Log.open(mine, segment_size=SEG) as log:
        assert not log.recovery_report.findings


def test_missing_newest_segment_after_a_clean_stop_is_refused_and_salvage_makes_the_cut_permanent(
    tmp_path: Path,
) -> None:
    make(tmp_path, 260)
    segs = wal_files(tmp_path)
    segs[-1].unlink()
    with pytest.raises(RecoveryRefused) as info:
        Log.open(tmp_path, segment_size=SEG)
    text = str(info.value)
    assert segs[-1].name in text and "stopped cleanly at LSN 260" in text
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        report = log.recovery_report
        assert report.salvaged and any(segs[-1].name in w for w in report.warnings)
        end = log.end_lsn
        assert end < 260
        log.append(1, b"after salvage")
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert not log.recovery_report.findings and log.end_lsn == end + 1


def test_missing_newest_segment_after_a_crash_is_refused(tmp_path: Path) -> None:
    make(tmp_path, 260)
    crashed(tmp_path)
    wal_files(tmp_path)[-1].unlink()
    with pytest.raises(RecoveryRefused, match="high-water mark"):
        Log.open(tmp_path, segment_size=SEG)


def test_a_crash_mid_rollover_is_not_loss(tmp_path: Path) -> None:
    """MARK moves to a new segment only once it exists: a crash before that leaves MARK on the sealed
    segment, and its .tmp (or nothing) behind."""
    make(tmp_path, 260)
    crashed(tmp_path)
    segs = wal_files(tmp_path)
    last = segs[-1]
    # As if the crash came just before the last rollover: MARK still names the one before.
    mark = read_mark(tmp_path)
    assert isinstance(mark, Mark)
    prev = segs[-2]
    seq, base = (int(part, 16) for part in prev.name[:-4].split("-"))
    raw = bytearray((tmp_path / MARK_FILE).read_bytes())
    older = Mark(mark.generation + 1, ID, seq, base, None)
    at = MARK_SLOT_AT[older.generation % 2]
    raw[at : at + len(encode_mark_slot(older))] = encode_mark_slot(older)
    (tmp_path / MARK_FILE).write_bytes(bytes(raw))
    os.rename(last, last.with_name(last.name + ".tmp"))
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.recovery_report.status == "clean" and log.recovery_report.dropped_tmp
        assert log.segments[-1].seq == seq + 1


def test_a_torn_tail_after_a_clean_stop_is_refused_but_after_a_crash_repaired(tmp_path: Path) -> None:
    make(tmp_path, 5)
    tail = wal_files(tmp_path)[-1]
    data = tail.read_bytes()
    end = len(data.rstrip(b"\0"))
    patch(tail, end - 1, bytes([data[end - 1] ^ 1]))
    with pytest.raises(RecoveryRefused, match="stopped cleanly at LSN 5 but ends at LSN 4"):
        Log.open(tmp_path, segment_size=SEG)
    crashed(tmp_path)
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.recovery_report.status == "repairable" and log.end_lsn == 4


def test_a_log_from_before_identities_opens_clean_and_gets_one(tmp_path: Path) -> None:
    write_segments(tmp_path, [(1, 1, segment_bytes(1, 1, [b"a", b"b"], size=SEG))])
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.recovery_report.status == "clean" and not log.recovery_report.warnings
        log_id = log.log_id
    assert read_identity(tmp_path) == log_id
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert not log.recovery_report.findings and log.log_id == log_id


@pytest.mark.parametrize("lost", [IDENTITY_FILE, MARK_FILE])
def test_a_lost_identity_or_mark_is_refused_and_salvage_writes_it_again(tmp_path: Path, lost: str) -> None:
    make(tmp_path, 100)
    (tmp_path / lost).unlink()
    with pytest.raises(RecoveryRefused, match=f"{lost} is missing"):
        Log.open(tmp_path, segment_size=SEG)
    assert inspect_log(tmp_path).exit_code == 2
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        assert log.log_id == ID and log.end_lsn == 100
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert not log.recovery_report.findings and log.log_id == ID


def test_another_logs_snapshot_store_is_refused_and_salvage_replays_everything(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    make(mine, 100, snapshot_at=80)
    make(theirs, 100, log_id=OTHER, snapshot_at=90)
    shutil.rmtree(mine / "snapshots")
    shutil.copytree(theirs / "snapshots", mine / "snapshots")
    with pytest.raises(RecoveryRefused, match=f"belongs to log {OTHER.hex()}"):
        Log.open(mine, segment_size=SEG)
    with Log.open(mine, segment_size=SEG, salvage=True) as log:
        assert log.snapshot is None and log.snapshot_lsn == 0
        assert [r.lsn for r in log.replay()] == list(range(1, 101))


def test_inspect_tells_the_last_stop_and_who_holds_the_lock(tmp_path: Path) -> None:
    make(tmp_path, 10)
    stop = inspect_log(tmp_path).last_stop
    assert stop is not None and stop.clean and stop.clean_lsn == 10
    assert stop.lock_pid == os.getpid() and stop.lock_alive  # the last holder: this process
    with Log.open(tmp_path, segment_size=SEG):
        stop = inspect_log(tmp_path).last_stop
        assert stop is not None and stop.clean is False and stop.lock_alive
        assert "holds the log" in stop.describe()[1]
    (tmp_path / "LOCK").write_text("999999999\n")
    stop = inspect_log(tmp_path).last_stop
    assert stop is not None and stop.lock_alive is False
    assert "not running" in stop.describe()[1]
    assert (tmp_path / QUARANTINE_DIR).exists() is False


def test_a_crash_while_creating_a_log_leaves_nothing_to_refuse(tmp_path: Path) -> None:
    """MARK is written before IDENTITY and both before the first segment: a crash between leaves a MARK
    (whose id the next open adopts) and maybe an IDENTITY.tmp (dropped)."""
    make(tmp_path, 0)
    (tmp_path / IDENTITY_FILE).rename(tmp_path / (IDENTITY_FILE + ".tmp"))
    for path in wal_files(tmp_path):
        path.unlink()
    mark = read_mark(tmp_path)
    assert isinstance(mark, Mark)
    marks = MarkFile(tmp_path, mark)  # as written before the first segment: none yet
    marks.write(ID, 0, 0, None)
    marks.close()
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.log_id == ID and log.recovery_report.status == "clean"
        assert log.recovery_report.dropped_tmp == [IDENTITY_FILE + ".tmp"]
    assert read_identity(tmp_path) == ID
