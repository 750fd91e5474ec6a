"""Replication's log APIs: a follower appends records exactly as the leader wrote them, a cursor reads a
log's durable records while it is being written, and truncate_after cuts the tail crash-safely."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from memento.errors import CorruptRecord, RecoveryRefused
from memento.log import Log
from memento.replica import Behind, Cursor, decode_wire, encode_wire, install_copied, record_crc
from memento.segment import HEADER_SIZE

SEG = 4096


def fill(log: Log, count: int, start: int = 0, size: int = 100) -> None:
    for i in range(start, start + count):
        log.append(1 + i % 3, bytes([i % 251]) * size, flags=i % 2)
    log.sync()


def records(log: Log, after: int = 0) -> list[tuple[int, int, int, bytes, int]]:
    return [(r.lsn, r.type, r.flags, r.payload, r.time) for r in log.replay(after)]


def raw_records(log: Log) -> list[bytes]:
    """Every record of `log` as the bytes its segment files hold."""
    cursor = Cursor(log, 0)
    try:
        return [bytes(data) for data in cursor.read(log.durable_lsn, 1 << 20)]
    finally:
        cursor.close()


def lsns_in(items: list[bytes]) -> list[int]:
    """The LSNs of the records in `items` (each one or more whole records, as `read_live` returns)."""
    lsns = []
    for data in items:
        at = 0
        while at < len(data):
            end, _rtype, _flags, lsn, _when, _payload = decode_wire(data, at)
            lsns.append(lsn)
            at = end
    return lsns


def copy_all(leader: Log, follower: Log, after: int = 0) -> int:
    """Stream every durable record of `leader` after `after` into `follower`, as replication does."""
    cursor = Cursor(leader, after)
    copied = 0
    try:
        while True:
            batch = cursor.read(leader.durable_lsn, 1000)
            if not batch:
                return copied
            for data in batch:
                _end, rtype, flags, lsn, when, payload = decode_wire(data, 0)
                follower.append_replica(lsn, rtype, flags, bytes(payload), when)
                copied += 1
            follower.sync()
    finally:
        cursor.close()


def pread_counter() -> tuple[list[int], Any]:
    """(the sizes of the reads made, an os.pread that records them) for a test to patch in."""
    reads: list[int] = []
    pread = os.pread

    def counting_pread(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return pread(fd, size, offset)

    return reads, counting_pread


def test_follower_holds_the_same_records_across_its_own_rollovers(tmp_path: Path) -> None:
    leader = Log.open(tmp_path / "a", segment_size=SEG)
    follower = Log.open(tmp_path / "b", segment_size=SEG * 2)
    fill(leader, 150)
    assert copy_all(leader, follower) == 150
    fill(leader, 30, start=150)
    assert copy_all(leader, follower, 150) == 30
    assert follower.durable_lsn == 180
    assert records(follower) == records(leader)
    assert len(leader.segments) > len(follower.segments) > 1  # each log rolls over by its own size
    leader.close()
    follower.close()
    with Log.open(tmp_path / "b", segment_size=SEG * 2) as reopened:
        assert [r[0] for r in records(reopened)] == list(range(1, 181))


def test_append_replica_refuses_an_lsn_that_does_not_follow(tmp_path: Path) -> None:
    with Log.open(tmp_path / "b") as follower:
        follower.append_replica(1, 1, 0, b"x", 5)
        with pytest.raises(ValueError, match="does not follow"):
            follower.append_replica(3, 1, 0, b"x", 5)
        with pytest.raises(ValueError, match="does not follow"):
            follower.append_replica(1, 1, 0, b"x", 5)
        with pytest.raises(ValueError, match="not allowed"):
            follower.append_replica(2, 0xFF, 0, b"", 5)
        follower.append_replica(2, 1, 0x80 | 0x40, b"\x01" + bytes(7) + b"y", 6)  # a compaction copy
        follower.sync()
        assert [(r.lsn, r.flags, r.time) for r in follower.replay(0)] == [(1, 0, 5), (2, 0xC0, 6)]


def test_append_replica_wire_stages_the_leaders_bytes_as_append_replica_would(tmp_path: Path) -> None:
    leader = Log.open(tmp_path / "a", segment_size=SEG)
    wire = Log.open(tmp_path / "b", segment_size=SEG * 2)
    fill(leader, 150)
    cursor = Cursor(leader, 0)
    body = memoryview(b"".join(cursor.read(leader.durable_lsn, 1 << 20)))
    cursor.close()
    at = 0
    positions = []
    while at < len(body):
        end, rtype, flags, lsn, payload, segment, offset = wire.append_replica_wire(body, at)
        assert (rtype, flags, lsn) == decode_wire(body, at)[1:4]
        assert payload.tobytes() == decode_wire(body, at)[5].tobytes()
        assert (segment, offset) == tuple(wire.last_position)
        positions.append((segment, offset))
        at = end
    wire.sync()
    assert records(wire) == records(leader)
    assert len({segment for segment, _offset in positions}) > 1  # across its own rollovers
    assert [wire.read(type(wire.last_position)(*p)).lsn for p in positions] == list(range(1, 151))
    # The bytes append_replica writes, at the same places: the files hold identical records.
    other = Log.open(tmp_path / "c", segment_size=SEG * 2)
    assert copy_all(leader, other) == 150
    assert [(s.seq, s.base_lsn) for s in wire.segments] == [(s.seq, s.base_lsn) for s in other.segments]
    assert raw_records(wire) == raw_records(other) == raw_records(leader)
    leader.close()
    wire.close()
    other.close()


def test_append_replica_wire_refuses_a_damaged_or_misplaced_record(tmp_path: Path) -> None:
    with Log.open(tmp_path / "b") as follower:
        first = encode_wire(1, 0, 1, 5, b"x")
        follower.append_replica_wire(memoryview(first), 0)
        damaged = bytearray(encode_wire(1, 0, 2, 5, b"hello"))
        damaged[-1] ^= 1
        with pytest.raises(CorruptRecord, match="checksum"):
            follower.append_replica_wire(memoryview(damaged), 0)
        with pytest.raises(CorruptRecord, match="cut short"):
            follower.append_replica_wire(memoryview(encode_wire(1, 0, 2, 5, b"x")[:20]), 0)
        with pytest.raises(CorruptRecord, match="checksum"):  # the length says more than there is
            follower.append_replica_wire(memoryview(encode_wire(1, 0, 2, 5, b"hello")[:-1]), 0)
        with pytest.raises(ValueError, match="does not follow"):
            follower.append_replica_wire(memoryview(encode_wire(1, 0, 3, 5, b"x")), 0)
        with pytest.raises(ValueError, match="not allowed"):
            follower.append_replica_wire(memoryview(encode_wire(0xF5, 0, 2, 5, b"x")), 0)
        assert follower.end_lsn == 1  # nothing refused was staged
        follower.append_replica_wire(memoryview(encode_wire(1, 0, 2, 6, b"y")), 0)
        follower.sync()
        assert [(r.lsn, r.payload, r.time) for r in follower.replay(0)] == [(1, b"x", 5), (2, b"y", 6)]


def test_cursor_stops_at_the_bound_and_reports_reclaimed_records(tmp_path: Path) -> None:
    with Log.open(tmp_path / "a", segment_size=SEG) as leader:
        fill(leader, 100)
        cursor = Cursor(leader, 10)
        got = cursor.read(20)
        assert [decode_wire(d, 0)[3] for d in got] == list(range(11, 21))
        assert cursor.read(20) == []
        cursor.close()
        assert record_crc(leader, 50) is not None
        assert record_crc(leader, 101) is None
        first = leader._segments[0]
        leader._segments.remove(first)  # what reclamation does to the oldest segment
        with pytest.raises(Behind):
            Cursor(leader, 0).read(100)


def test_truncate_after_quarantines_the_tail_and_appends_continue(tmp_path: Path) -> None:
    path = tmp_path / "a"
    with Log.open(path, segment_size=SEG) as log:
        fill(log, 120)
        kept = records(log)[:57]
        segments = len(log.segments)
        log.truncate_after(57)
        assert log.end_lsn == log.durable_lsn == 57
        assert len(log.segments) < segments
        assert records(log) == kept
        log.append(2, b"new")
        log.sync()
    quarantined = os.listdir(path / "quarantine")
    assert any(name.endswith(".bin") for name in quarantined)
    with Log.open(path, segment_size=SEG) as reopened:  # MARK names the cut segment: opens cleanly
        assert not reopened.recovery_report.quarantined
        got = records(reopened)
        assert got[:57] == kept and got[57][0] == 58 and got[57][3] == b"new"


def test_truncate_after_refuses_below_the_snapshot(tmp_path: Path) -> None:
    with Log.open(tmp_path / "a") as log:
        fill(log, 10)
        log.save_snapshot(8, b"state")
        with pytest.raises(ValueError, match="snapshot"):
            log.truncate_after(5)
        log.truncate_after(8)
        assert log.end_lsn == 8


def test_crash_after_moving_later_segments_is_finished_by_a_second_cut(tmp_path: Path) -> None:
    """A crash between quarantining the later segments and cutting the segment: the cut segment is sealed
    and last, open continues after it; truncating again gives the intended log."""
    path = tmp_path / "a"
    with Log.open(path, segment_size=SEG) as log:
        fill(log, 120)
        kept = records(log)[:30]
        names = [s.path for s in log.segments]
    index = max(i for i, p in enumerate(names) if int(Path(p).name.split("-")[1][:16], 16) <= 31)
    os.makedirs(path / "quarantine", exist_ok=True)
    for later in names[index + 1 :]:
        shutil.move(later, path / "quarantine" / Path(later).name)
    from memento.identity import MarkFile, read_mark

    mark = read_mark(path)
    assert mark is not None and not isinstance(mark, str)
    seq, base = (int(x, 16) for x in Path(names[index]).name[:-4].split("-"))
    writer = MarkFile(path, mark)
    writer.write(mark.log_id, seq, base, None)
    writer.close()
    with Log.open(path, segment_size=SEG) as log:
        assert log.end_lsn > 30
        log.truncate_after(30)
        assert records(log) == kept
    with Log.open(path, segment_size=SEG) as log:
        assert records(log) == kept


def test_install_copied_gives_the_leaders_identity(tmp_path: Path) -> None:
    with Log.open(tmp_path / "a", segment_size=SEG) as leader:
        fill(leader, 80)
        log_id = leader.log_id
        want = records(leader)
        leader.save_snapshot(80, b"state")
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "a" / "wal", copy / "wal")
    shutil.copytree(tmp_path / "a" / "snapshots", copy / "snapshots")
    with pytest.raises(RecoveryRefused):  # segments and store carry an id: no IDENTITY is refused
        Log.open(copy, segment_size=SEG).close()
    install_copied(copy, log_id)
    with Log.open(copy, segment_size=SEG) as follower:
        assert follower.log_id == log_id
        assert records(follower, 0) == want
        assert follower.snapshot is not None and follower.snapshot.lsn == 80


def test_read_live_serves_staged_records_then_written_ones(tmp_path: Path) -> None:
    """A leader streams what it appended before syncing it: from memory while staged, from the files
    once written, across rollovers, and never a record twice or out of order."""
    with Log.open(tmp_path / "a", segment_size=SEG) as log:
        fill(log, 5)
        cursor = Cursor(log, 0)
        got: list[int] = []
        for round_ in range(30):
            for i in range(7):
                log.append(1, bytes([round_, i]) * 60)
            got += lsns_in(cursor.read_live(300))  # part of it, from memory
            if round_ % 3 == 0:
                log.sync()  # what was staged is now only in the files
            got += lsns_in(cursor.read_live(300))
        while batch := cursor.read_live():
            got += lsns_in(batch)
        cursor.close()
        assert got == list(range(1, log.end_lsn + 1))
        assert len(log.segments) > 2
        log.sync()
        assert [decode_wire(d, 0)[5].tobytes() for d in Cursor(log, 5).read(12)] == [
            r.payload for r in log.replay(5) if r.lsn <= 12
        ]


def test_cursor_returns_before_a_record_larger_than_what_is_left_of_the_window(tmp_path: Path) -> None:
    # A small record, then one larger than the rest of the read window, in a segment that is not the last:
    # the read returns the small one (it used to leave for the next segment and come back for ever).
    with Log.open(tmp_path / "log", segment_size=4 << 20) as log:
        log.append(1, b"small")
        log.append(1, b"x" * (2 << 20))
        log.append(1, b"y" * (3 << 20))  # in the next segment
        log.sync()
        assert len(log.segments) == 2
        cursor = Cursor(log, 0)
        lsns: list[int] = []
        for _ in range(5):
            lsns.extend(decode_wire(data, 0)[3] for data in cursor.read(log.durable_lsn, 1 << 20))
        assert lsns == [1, 2, 3]
        cursor.close()


def test_read_live_returns_every_record_once_whole_chunks_or_walked(tmp_path: Path) -> None:
    """Whole staged chunks go out as one item, a seal never: across rollovers in memory, reads of every
    size and syncs at any point, the records read are the log's, byte for byte and in order."""
    with Log.open(tmp_path / "a", segment_size=SEG) as log:
        cursor = Cursor(log, 0)
        got: list[bytes] = []
        for round_ in range(40):
            for i in range(round_ % 9):
                log.append(1 + i % 3, bytes([round_, i]) * (20 + 37 * i), flags=i % 2)
            got += cursor.read_live((None, 150, 1000, 1 << 20)[round_ % 4] or 1 << 20)
            if round_ % 5 == 1:
                log.sync()
        log.sync()
        while batch := cursor.read_live():
            got += batch
        cursor.close()
        assert len(log.segments) > 3
        wanted = [encode_wire(r.type, r.flags, r.lsn, r.time, r.payload) for r in log.replay(0)]
        assert b"".join(got) == b"".join(wanted)
        assert lsns_in(got) == list(range(1, log.end_lsn + 1))


def test_read_live_finds_flushed_records_from_where_it_left_memory(tmp_path: Path) -> None:
    """A cursor that read the staged batch and then finds the next records already written positions
    itself where it left the batch, not by walking the segment from its first record (on a leader under
    steady load that walk, once per read, took a quarter of its time)."""
    import memento.replica as replica

    walks: list[tuple[int, int]] = []
    walk = replica._walk

    def counting_walk(fd: int, seg: Any, lsn: int, off: int = HEADER_SIZE, expected: int = 0) -> int:
        walks.append((lsn, expected or seg.base_lsn))
        return walk(fd, seg, lsn, off, expected)

    with Log.open(tmp_path / "a", segment_size=1 << 20) as log:
        fill(log, 500)
        cursor = Cursor(log, 0)
        got = lsns_in(cursor.read_live())
        for round_ in range(5):
            log.append(1, bytes([round_]) * 100)
            got += lsns_in(cursor.read_live())  # from memory
            for _ in range(3):
                log.append(1, bytes([round_]) * 100)
            log.sync()  # written: the next read goes to the file
            replica._walk = counting_walk
            try:
                got += lsns_in(cursor.read_live())
            finally:
                replica._walk = walk
        cursor.close()
        assert got == list(range(1, log.end_lsn + 1))
        assert len(log.segments) == 1
        assert walks and all(start == lsn for lsn, start in walks), walks


def test_a_batch_written_but_not_yet_reported_durable_is_read_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer thread takes the next batch before the owner hears that the last one is durable: a
    leader's cursor a batch behind still reads it from memory (it used to read it back from the file, a
    tenth of the leader's pushes under load, each costing many times a read from memory)."""
    from memento.staging import batch_done, take_batch, write_batch

    reads, counting_pread = pread_counter()

    with Log.open(tmp_path / "a", segment_size=1 << 20) as log:
        fill(log, 3)
        cursor = Cursor(log, 3)
        got: list[bytes] = []
        monkeypatch.setattr(os, "pread", counting_pread)
        for round_ in range(6):
            for i in range(5):
                log.append(1, bytes([round_, i]) * 200)
            first = take_batch(log)
            assert first is not None
            write_batch(log, first)
            log.append(2, bytes([round_]) * 50)
            following = take_batch(log)  # before `first` is reported durable
            assert following is not None
            got += cursor.read_live()
            batch_done(log, first)
            write_batch(log, following)
            batch_done(log, following)
        monkeypatch.undo()
        assert reads == []
        assert log._written is None and log._inflight is None
        wanted = [encode_wire(r.type, r.flags, r.lsn, r.time, r.payload) for r in log.replay(3)]
        assert b"".join(got) == b"".join(wanted)
        cursor.close()


def test_read_live_from_the_files_reads_only_the_records_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cursor behind what is in memory reads the files up to where memory starts, or up to the tail's
    end, not a whole read window of the preallocated segment; the records come as the file's bytes, in
    one item per read, identical to the records one by one."""

    reads, counting_pread = pread_counter()

    with Log.open(tmp_path / "a", segment_size=4 << 20) as log:
        fill(log, 40, size=300)
        cursor = Cursor(log, 0)
        monkeypatch.setattr(os, "pread", counting_pread)
        got = cursor.read_live()  # nothing in memory: up to the tail's end
        for i in range(10):
            log.append(1, bytes([i]) * 300)
        got += cursor.read_live()  # the staged records: from memory
        fill(log, 20, start=40, size=300)
        for i in range(4):
            log.append(1, bytes([i]) * 300)
        got += cursor.read_live()  # the written ones up to where the staged start, then those
        got += cursor.read_live()
        monkeypatch.undo()
        log.sync()
        cursor.close()
        assert len(reads) == 2 and all(size < 40 * 400 for size in reads), reads
        assert len(got) <= 4
        wanted = [encode_wire(r.type, r.flags, r.lsn, r.time, r.payload) for r in log.replay(0)]
        assert b"".join(got) == b"".join(wanted)
        assert lsns_in(got) == list(range(1, log.end_lsn + 1))


def test_a_cursor_that_follows_another_reads_on_from_the_same_record(tmp_path: Path) -> None:
    """A frame read by one follower's cursor is sent to another follower standing at the same LSN: that
    cursor follows (from memory, or from the files) and reads on exactly as the first."""
    with Log.open(tmp_path / "a", segment_size=SEG) as log:
        fill(log, 10)
        first, second = Cursor(log, 10), Cursor(log, 10)
        for round_ in range(24):
            for i in range(round_ % 7 + 1):
                log.append(1, bytes([round_, i]) * 90)
            if round_ % 3 == 1:
                log.sync()  # the next read goes to the files
            read = first.read_live((1 << 20, 400)[round_ % 2])
            if round_ % 4 == 3:
                assert second.read_live((1 << 20, 400)[round_ % 2]) == read
            else:
                second.follow(first)
            assert second.next_lsn == first.next_lsn
        log.sync()
        rest = [first.read_live(), second.read_live()]
        assert rest[0] == rest[1] and lsns_in(rest[0])[-1] == log.end_lsn
        first.close()
        second.close()
        assert len(log.segments) > 2


def test_append_replica_frame_stages_what_append_replica_wire_would(tmp_path: Path) -> None:
    """A RECORDS frame's records staged at once: the same records at the same places as one by one,
    whether the frame fits the tail segment (one copy) or crosses a rollover (record by record)."""
    leader = Log.open(tmp_path / "a", segment_size=SEG)
    fill(leader, 200)
    items = raw_records(leader)
    each = Log.open(tmp_path / "each", segment_size=SEG * 2)
    frame = Log.open(tmp_path / "frame", segment_size=SEG * 2)
    at = 0
    sizes = [1, 3, 7, 2, 11, 5]
    turn = 0
    while at < len(items):
        body = memoryview(b"".join(items[at : at + sizes[turn % len(sizes)]]))
        turn += 1
        one_by_one = []
        pos = 0
        while pos < len(body):
            pos, rtype, flags, lsn, payload, seq, off = each.append_replica_wire(body, pos)
            one_by_one.append((rtype, flags, lsn, payload.tobytes(), seq, off))
        staged, error = frame.append_replica_frame(body, 0)
        assert error is None
        assert [(t, f, n, p.tobytes(), s, o) for t, f, n, p, s, o in staged] == one_by_one
        at += len(one_by_one)
    each.sync()
    frame.sync()
    assert len(frame.segments) > 2
    assert [(s.seq, s.base_lsn) for s in frame.segments] == [(s.seq, s.base_lsn) for s in each.segments]
    assert raw_records(frame) == raw_records(each) == raw_records(leader)
    assert frame.last_position == each.last_position
    for log in (leader, each, frame):
        log.close()


@pytest.mark.parametrize("bad", ["checksum", "cut", "gap", "type"])
def test_append_replica_frame_stages_the_records_before_a_bad_one_and_reports_it(
    tmp_path: Path, bad: str
) -> None:
    """A frame with a bad record: the ones before it are staged and handed back with the error (the
    follower applies them, then ends the stream), nothing from the bad one on."""
    with Log.open(tmp_path / "b") as follower:
        good = [encode_wire(1, 0, lsn, 5, bytes([lsn]) * 30) for lsn in (1, 2, 3)]
        wrong = {
            "checksum": bytes(encode_wire(1, 0, 4, 5, b"hello")[:-1]) + b"H",
            "cut": encode_wire(1, 0, 4, 5, b"hello")[:20],
            "gap": encode_wire(1, 0, 5, 5, b"hello"),
            "type": encode_wire(0xF5, 0, 4, 5, b"hello"),
        }[bad]
        after = encode_wire(1, 0, 5, 5, b"after")
        staged, error = follower.append_replica_frame(memoryview(b"".join([*good, wrong, after])), 0)
        assert [lsn for _t, _f, lsn, _p, _s, _o in staged] == [1, 2, 3]
        assert isinstance(error, CorruptRecord if bad in ("checksum", "cut") else ValueError)
        assert follower.end_lsn == 3
        follower.sync()
        assert [r.payload for r in follower.replay(0)] == [bytes([lsn]) * 30 for lsn in (1, 2, 3)]
