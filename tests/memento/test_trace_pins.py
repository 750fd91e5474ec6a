"""The application-blind parts of `memento trace` and of replay's pins, on real small logs.

`records_containing` must yield exactly the records of the asked types whose payload holds a needle,
including needles added while it runs, and never a record where a needle only straddles two records;
`segment_pins` must apply the reclamation rules: a prefix of covered segments without live records is
reclaimable now, a live record holds its segment and blocks the ones after it, records newer than the
oldest snapshot kept are held by the snapshot, the last segment is active.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memento import inspect_decoders
from memento.cli import app
from memento.errors import CorruptRecord
from memento.inspect import Inspection, inspect_log, iter_records
from memento.log import Log
from memento.pins import (
    ACTIVE,
    COPIED,
    HELD,
    RECLAIMABLE,
    SNAPSHOT,
    WAITS,
    CopyTracker,
    Holder,
    segment_pins,
    totals,
)
from memento.segment import HEADER_SIZE
from memento.trace import TraceLine, quick_inspection, read_record, record_at, records_containing

SEGMENT = 4096


def make_log(path: Path) -> None:
    with Log.open(path, segment_size=SEGMENT) as log:
        for i in range(1, 201):
            log.append(1 + i % 3, b"item-%04d " % i + b"." * 200 + (b"NEEDLE" if i in (7, 150) else b""))
        log.sync()
        log.save_snapshot(120, b"state")


def test_records_containing_finds_needles_and_follows_new_ones(tmp_path: Path) -> None:
    make_log(tmp_path)
    insp = inspect_log(tmp_path)
    assert len(insp.segments) > 4
    found = [r.lsn for r in records_containing(insp, [b"NEEDLE"], {1, 2, 3})]
    assert found == [7, 150]
    # Only the types asked for: LSN 7 has type 2, LSN 150 type 1.
    assert [r.lsn for r in records_containing(insp, [b"NEEDLE"], {1})] == [150]
    # A needle learnt from a record found is searched for in the records after it.
    needles = [b"item-0007 "]
    seen = []
    for record in records_containing(insp, needles, {1, 2, 3}):
        seen.append(record.lsn)
        if record.lsn == 7:
            needles.append(b"item-0190 ")
    assert seen == [7, 190]
    tenth = record_at(insp, 10)
    assert tenth is not None and tenth.lsn == 10 and tenth.payload.startswith(b"item-0010 ")
    assert read_record(insp, tenth.position.segment, tenth.position.offset) == tenth
    assert read_record(insp, tenth.position.segment, tenth.position.offset + 1) is None
    # Bytes straddling the end of one record and the header of the next: no record holds them.
    following = record_at(insp, 11)
    assert following is not None and following.position.segment == tenth.position.segment
    wal = tmp_path / "wal" / insp.segments[0].name
    boundary = following.position.offset
    straddle = wal.read_bytes()[boundary - 4 : boundary + 4]
    assert list(records_containing(insp, [straddle], {1, 2, 3})) == []
    assert [r.lsn for r in records_containing(insp, [b"NEEDLE"], {1, 2, 3}, after_lsn=7)] == [150]
    assert [r.lsn for r in records_containing(insp, [b"NEEDLE"], {1, 2, 3}, to_lsn=149)] == [7]


def test_segment_pins_follow_the_reclamation_rules(tmp_path: Path) -> None:
    make_log(tmp_path)
    insp = inspect_log(tmp_path)
    segs = insp.segments
    covered = [s for s in segs[:-1] if (segs[segs.index(s) + 1].base_lsn - 1) <= 120]
    assert len(covered) >= 3
    held = covered[1]
    holders = [Holder("queue 'q'", held.seq, 2, 3000, held.base_lsn, 1_700_000_000_000_000)]
    pins = segment_pins(insp, holders)
    statuses = [p.status for p in pins]
    assert statuses[0] == RECLAIMABLE and statuses[1] == HELD
    assert pins[1].reason == f"held by queue 'q' (2 records, oldest LSN {held.base_lsn})"
    assert set(statuses[2 : len(covered)]) == {WAITS}
    assert set(statuses[len(covered) : -1]) == {SNAPSHOT} and statuses[-1] == ACTIVE
    sparse = segment_pins(insp, [Holder("queue 'q'", held.seq, 1, 100, held.base_lsn)])
    assert "sparse (about 2% live): the next reclaim copies them forward" in sparse[1].reason
    (total,) = totals(holders)
    assert total.records == 2 and total.oldest_lsn == held.base_lsn and total.segments == 1
    # Copies of the first segment's records made after the snapshot: it waits for a snapshot after them.
    pins = segment_pins(insp, [], {covered[0].seq: 190})
    assert pins[0].status == COPIED and pins[1].status == WAITS
    # No snapshot: nothing can be reclaimed yet.
    tracker = CopyTracker(insp)
    assert tracker.through == {}


def test_replay_text_names_the_pins(tmp_path: Path) -> None:
    class Holding(inspect_decoders.GenericDecoder):
        def holders(self, read: object) -> list[Holder]:
            return [Holder("the keeper", 2, 1, 10, 30)]

    inspect_decoders.register("holding", Holding)
    make_log(tmp_path)
    result = CliRunner().invoke(app, ["replay", "--decoder", "holding", "--text", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "the keeper: 1 record, 10 bytes in 1 segment, oldest LSN 30" in result.stdout
    assert "reclaimable now" in result.stdout
    assert "held by the keeper (1 record, oldest LSN 30)" in result.stdout


def test_damage_met_on_the_way_is_named_not_skipped(tmp_path: Path) -> None:
    make_log(tmp_path)
    insp = quick_inspection(tmp_path)
    # The older segments are only header-checked up front: damage there is found when walked.
    assert not insp.scans[0].scanned and insp.scans[-1].scanned and insp.end_lsn == 200
    target = record_at(insp, 150)
    assert target is not None
    name = next(s.name for s in insp.scans if s.seq == target.position.segment)
    path = tmp_path / "wal" / name
    data = bytearray(path.read_bytes())
    data[HEADER_SIZE : HEADER_SIZE + 4] = (3).to_bytes(4, "little")  # a length no record can have
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecord, match=f"{name} offset {HEADER_SIZE}"):
        list(records_containing(quick_inspection(tmp_path), [b"NEEDLE"], {1, 2, 3}))

    class Finder(inspect_decoders.GenericDecoder):
        def trace(self, inspection: Inspection, key: str | None, lsn: int | None) -> list[TraceLine]:
            found = records_containing(inspection, [(key or "").encode()], {1, 2, 3})
            return [(f"LSN {r.lsn}", {"lsn": r.lsn}) for r in found]

    inspect_decoders.register("finder", Finder)
    result = CliRunner().invoke(app, ["trace", "--decoder", "finder", "NEEDLE", str(tmp_path)])
    assert result.exit_code == 2 and f"{name} offset {HEADER_SIZE}" in result.stderr
    result = CliRunner().invoke(app, ["trace", "--decoder", "finder", "item-0003 ", str(tmp_path)])
    assert result.exit_code == 0 and result.stdout == "LSN 3\n"
    result = CliRunner().invoke(app, ["trace", "--decoder", "generic", "x", str(tmp_path)])
    assert result.exit_code == 4 and "decoder 'generic' cannot trace" in result.stderr


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_quick_listing_checks_what_it_reads_and_reports_the_full_verdict(tmp_path: Path) -> None:
    make_log(tmp_path)
    full = [(r.lsn, r.payload) for r in iter_records(inspect_log(tmp_path))]
    quick = inspect_log(tmp_path, quick=True)
    assert quick.partial and not inspect_log(tmp_path).partial
    # A clean log reads the same whether or not its older segments were scanned up front.
    assert [(r.lsn, r.payload) for r in iter_records(quick)] == full
    assert [r.lsn for r in iter_records(quick, 100, 103)] == [101, 102, 103]
    clean = CliRunner().invoke(app, ["inspect", "--records", str(tmp_path)])
    assert clean.exit_code == 0 and len(clean.stdout.splitlines()) == 200
    # A bit flipped in the payload of LSN 150 (after the snapshot at 120): the crc fails.
    target = record_at(quick, 150)
    assert target is not None
    name = next(s.name for s in quick.scans if s.seq == target.position.segment)
    _flip(tmp_path / "wal" / name, target.position.offset + 40)
    where = f"{name} offset {target.position.offset} LSN 150"
    with pytest.raises(CorruptRecord, match=f"{where}: record checksum"):
        list(iter_records(inspect_log(tmp_path, quick=True)))
    result = CliRunner().invoke(app, ["inspect", "--records", str(tmp_path)])
    verdict = inspect_log(tmp_path)
    assert verdict.exit_code == 2
    assert result.exit_code == verdict.exit_code
    assert [int(line.split()[0]) for line in result.stdout.splitlines()] == list(range(1, 150))
    assert f"memento: log is {verdict.status} (" in result.stderr
    # A range reads only part of the log: the whole log is scanned first, so damage outside it is told too.
    ranged = CliRunner().invoke(app, ["inspect", "--records", "--to-lsn", "10", str(tmp_path)])
    assert ranged.exit_code == verdict.exit_code and len(ranged.stdout.splitlines()) == 10
    assert f"memento: log is {verdict.status} (" in ranged.stderr


def test_quick_listing_finds_a_segment_that_lost_its_end(tmp_path: Path) -> None:
    make_log(tmp_path)
    quick = inspect_log(tmp_path, quick=True)
    middle = quick.scans[len(quick.scans) // 2]
    following = quick.scans[len(quick.scans) // 2 + 1]
    last = record_at(quick, following.base_lsn - 1)
    assert last is not None and last.position.segment == middle.seq
    # The middle segment's last record zeroed: the segment now ends one LSN before the next one starts.
    path = tmp_path / "wal" / middle.name
    data = bytearray(path.read_bytes())
    data[last.position.offset :] = bytes(len(data) - last.position.offset)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecord, match=f"segment starts at LSN {following.base_lsn}"):
        list(iter_records(inspect_log(tmp_path, quick=True)))


def test_quick_listing_reads_records_of_any_size_across_segments(tmp_path: Path) -> None:
    """0 B to several MiB, many larger than a segment's usual fill: the checked walk of the older segments
    gives the same records as the full scan, and a flipped byte deep inside a large body is found."""
    sizes = [0, 1, 4095, 4096, 3 << 20, 17, (1 << 20) + 3, 65_537, 0, 2 << 20]
    with Log.open(tmp_path, segment_size=1 << 20) as log:
        for i, size in enumerate(sizes):
            log.append(1 + i % 3, bytes([i]) * size)
        log.sync()
    full = [(r.lsn, r.payload) for r in iter_records(inspect_log(tmp_path))]
    quick = inspect_log(tmp_path, quick=True)
    assert quick.partial
    assert [(r.lsn, r.payload) for r in iter_records(quick)] == full
    assert [len(p) for _lsn, p in full] == sizes
    big = record_at(quick, 5)
    assert big is not None and len(big.payload) == 3 << 20
    name = next(s.name for s in quick.scans if s.seq == big.position.segment)
    assert name != quick.scans[-1].name  # in a segment the quick inspection did not scan
    _flip(tmp_path / "wal" / name, big.position.offset + 64 + (2 << 20))
    with pytest.raises(CorruptRecord, match=f"{name} offset {big.position.offset} LSN 5: record checksum"):
        list(iter_records(inspect_log(tmp_path, quick=True)))
