"""Record times (format version 3): every reader returns the time an append stamped, older segments read
with time 0 next to newer ones in one log, compaction keeps times, a fixed clock makes a log's bytes
reproducible, and a clock that moved back is reported by open and by `memento inspect`."""

from __future__ import annotations

import asyncio
import re
import struct
import time
from pathlib import Path

from typer.testing import CliRunner

from memento.cli import app
from memento.inspect import inspect_log, iter_records
from memento.log import Log
from memento.reader import decode_at, records_in
from memento.record import FLAG_RELOCATED, LEGACY_FRAME, LEGACY_HEAD, TYPE_SEAL, original
from memento.segment import FORMAT_VERSION, HEADER_SIZE, decode_header
from memento.writer import AsyncWriter

from .helpers import segment_bytes, wal_files, write_segments

SEG = 4096
T0 = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z, microseconds since the epoch


class SetClock:
    """A clock the test sets; each reading is noted."""

    def __init__(self, now: int = T0) -> None:
        self.now = now
        self.readings = 0

    def __call__(self) -> int:
        self.readings += 1
        return self.now


def now_us() -> int:
    return time.time_ns() // 1000


def write_timed(path: Path, count: int, clock: SetClock, step: int = 1000) -> list[int]:
    """Append `count` records, the i-th at clock time T0 + i * step; returns the times."""
    times = []
    # A fixed log id too: a random one (in every segment header) would differ between two logs.
    with Log.open(path, segment_size=SEG, clock=clock, log_id=b"record-time-test") as log:
        for i in range(count):
            clock.now = T0 + i * step
            log.append(1 + i % 3, b"%06d" % i * 8)
            times.append(clock.now)
    return times


def test_every_reader_returns_the_append_time(tmp_path: Path) -> None:
    clock = SetClock()
    times = write_timed(tmp_path, 300, clock)
    with Log.open(tmp_path, segment_size=SEG, clock=clock) as log:
        replayed = list(log.replay(after_lsn=0))
        assert [r.time for r in replayed] == times
        assert [log.read(r.position).time for r in replayed] == times
        clock.now = T0 + 10**9
        lsn = log.append(1, b"staged")
        assert log.read(log.last_position).time == T0 + 10**9  # from the staged bytes
        log.sync()
        assert log.read(log.last_position) == log.read(log.last_position)._replace(lsn=lsn)
    insp = inspect_log(tmp_path)
    assert [r.time for r in iter_records(insp)] == [*times, T0 + 10**9]
    first = wal_files(tmp_path)[0].read_bytes()
    assert [r.time for r in records_in(first, 1, 1, "seg")] == times[: insp.segments[0].records]
    assert decode_at(first, HEADER_SIZE, 1, "seg", HEADER_SIZE).time == times[0]


def test_seal_records_carry_the_rollover_time(tmp_path: Path) -> None:
    clock = SetClock()
    write_timed(tmp_path, 200, clock)
    first = wal_files(tmp_path)[0].read_bytes()
    insp = inspect_log(tmp_path)
    seal_at = insp.segments[0].data_end - 28
    length, _crc, rtype, _flags, _res, lsn, when = struct.unpack_from("<IIBBHQQ", first, seal_at)
    assert (length, rtype, lsn) == (20, TYPE_SEAL, insp.segments[1].base_lsn)
    assert T0 <= when <= T0 + 200 * 1000


def test_async_writer_appends_are_stamped(tmp_path: Path) -> None:
    clock = SetClock(T0 + 42)

    async def run() -> None:
        with Log.open(tmp_path, segment_size=SEG, clock=clock) as log:
            writer = AsyncWriter(log)
            lsn, position = writer.append_at(1, b"via the writer")
            await writer.wait_durable(lsn)
            assert log.read(position).time == T0 + 42
            await writer.close()

    asyncio.run(run())


def test_default_clock_is_the_wall_clock(tmp_path: Path) -> None:
    before = now_us()
    with Log.open(tmp_path, segment_size=SEG) as log:
        log.append(1, b"x")
        log.sync()
        stamped = log.read(log.last_position).time
    assert before <= stamped <= now_us()


def test_version_2_segments_then_version_3_in_one_log(tmp_path: Path) -> None:
    payloads = [b"old %03d " % i * 6 for i in range(60)]
    write_segments(
        tmp_path,
        [
            (1, 1, segment_bytes(1, 1, payloads[:40], seal=True, version=2)),
            (2, 41, segment_bytes(2, 41, payloads[40:], version=2)),
        ],
    )
    old_tail = wal_files(tmp_path)[1]
    clock = SetClock()
    with Log.open(tmp_path, segment_size=SEG, clock=clock) as log:
        assert log.recovery_report.status == "clean" and not log.recovery_report.warnings
        assert len(log.segments) == 3  # the version-2 tail was sealed; appends go to a new segment
        for i in range(100):
            clock.now = T0 + i
            log.append(2, b"new %03d " % i * 6)
        old = list(log.replay(after_lsn=0))
    # The old tail got its seal in the version-2 layout, right after its last record.
    raw = old_tail.read_bytes()
    end = HEADER_SIZE + sum(LEGACY_HEAD.size + len(p) for p in payloads[40:])
    assert LEGACY_HEAD.unpack_from(raw, end)[2:] == (TYPE_SEAL, 0, 0, 61)
    assert [header_version(p) for p in wal_files(tmp_path)][:3] == [2, 2, FORMAT_VERSION]
    assert [r.payload for r in old[:60]] == payloads and all(r.time == 0 for r in old[:60])
    assert [r.time for r in old[60:]] == [T0 + i for i in range(100)]
    with Log.open(tmp_path, segment_size=SEG, clock=clock) as log:
        assert log.recovery_report.status == "clean" and not log.recovery_report.warnings
        again = list(log.replay(after_lsn=0))
        assert again == old
        assert [log.read(r.position) for r in again] == old
    insp = inspect_log(tmp_path)
    assert insp.status == "clean" and insp.end_lsn == 160
    assert list(iter_records(insp)) == old
    assert records_in(raw, 2, 41, old_tail.name, frame=LEGACY_FRAME).__next__().payload == payloads[40]


def header_version(path: Path) -> int:
    header = decode_header(path.read_bytes()[:HEADER_SIZE])
    assert not isinstance(header, str)
    return header.version


def test_compaction_copies_keep_the_original_time(tmp_path: Path) -> None:
    clock = SetClock()
    write_timed(tmp_path, 100, clock)
    with Log.open(tmp_path, segment_size=SEG, clock=clock) as log:
        records = {r.position: r for r in log.replay(after_lsn=0)}
        keep = {r.position for r in records.values() if r.lsn in (4, 51)}
        log.save_snapshot(100, b"state")
        clock.now = T0 + 10**10  # compaction runs much later
        result = log.reclaim(100, lambda pos: pos in keep)
        assert set(result.relocated) == keep
        for old, new in result.relocated.items():
            copy = log.read(new)
            assert copy.flags & FLAG_RELOCATED and original(copy)[0] == records[old].lsn
            assert copy.time == records[old].time


def test_compaction_of_version_2_records_keeps_time_unknown(tmp_path: Path) -> None:
    write_segments(
        tmp_path,
        [
            (1, 1, segment_bytes(1, 1, [b"a" * 100] * 30, seal=True, version=2)),
            (2, 31, segment_bytes(2, 31, [b"b" * 100] * 30, version=2)),
        ],
    )
    with Log.open(tmp_path, segment_size=SEG, clock=SetClock()) as log:
        first = next(log.replay(after_lsn=0))
        log.save_snapshot(60, b"state")
        result = log.reclaim(60, lambda pos: pos == first.position)
        copy = log.read(result.relocated[first.position])
        assert original(copy) == (1, first.payload) and copy.time == 0


def test_a_fixed_clock_makes_the_same_bytes(tmp_path: Path) -> None:
    logs = []
    for name in ("a", "b"):
        path = tmp_path / name
        write_timed(path, 250, SetClock())
        logs.append([f.read_bytes() for f in wal_files(path)])
    assert logs[0] == logs[1] and len(logs[0]) >= 3


def test_clock_moved_back_is_reported_by_open_and_inspect(tmp_path: Path) -> None:
    ahead = 3600 * 1_000_000
    with Log.open(tmp_path, segment_size=SEG, clock=lambda: now_us() + ahead) as log:
        log.append(1, b"written while the clock was an hour ahead")
    with Log.open(tmp_path, segment_size=SEG) as log:
        said = "\n".join(log.recovery_report.warnings)
        assert re.search(r"clock moved back by 3[56]\d\d s", said), said
        assert log.recovery_report.status == "clean"
    result = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"warning: clock moved back by 3[56]\d\d s", result.output), result.output
    assert "clock moved back" in CliRunner().invoke(app, ["inspect", "--json", str(tmp_path)]).output


def test_a_clock_a_little_ahead_is_not_reported(tmp_path: Path) -> None:
    with Log.open(tmp_path, segment_size=SEG, clock=lambda: now_us() + 30_000_000) as log:
        log.append(1, b"30 s ahead: within what clock adjustments do")
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert not log.recovery_report.warnings
    # The injected clock is what open compares with, too.
    with Log.open(tmp_path, segment_size=SEG, clock=lambda: now_us() - 120_000_000) as log:
        assert any("clock moved back by 1" in w for w in log.recovery_report.warnings)
    assert inspect_log(tmp_path).warnings == []


def test_version_2_log_has_no_time_to_check(tmp_path: Path) -> None:
    write_segments(tmp_path, [(1, 1, segment_bytes(1, 1, [b"x"] * 5, version=2))])
    with Log.open(tmp_path, segment_size=SEG, clock=lambda: 0) as log:
        assert not log.recovery_report.warnings
