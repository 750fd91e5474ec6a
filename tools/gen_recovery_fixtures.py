"""Rebuild recovery-fixtures/: damaged Memento log directories, each with the outcome it must have.

Strategy: every case starts from a log written through the engine's own API (Log.open/append/sync,
save_snapshot, reclaim) with 4 KiB segments so that fixtures stay a few KiB, then damages it by byte
surgery (flip, cut, zero, rewrite, delete, rename) the way a crash or a bad disk would. Payloads and
snapshot states are functions of the LSN, record times come from a fixed clock (`FixedClock`), and every
log gets the same id (LOG_ID), so a run rebuilds the same bytes every time; the pid in LOCK and LMDB's
lock.mdb are removed because they are not part of the state. A log is left as a crash leaves it (MARK says
it was not stopped cleanly) unless the case says `clean=True`: a torn tail is damage after a clean stop,
but what a crash leaves otherwise. Logs of an older format version are made by rewriting the engine's
segments in that version's layout (`downgrade`), as that version would have written them.

The expectations in expected.json are written here by hand from the construction (not read back from the
engine), so tests/memento/test_fixtures.py checks the engine against them:
    inspect_exit   exit code of `memento inspect <case>/data [inspect_args...]`
    recovery       clean | repaired | refused | unsupported: what Log.open(data, **open_args) does
    kept_lsns      [first, last] LSN the log holds after open (first segment's base, end_lsn), or null;
                   replay(after_lsn=0) yields exactly these unless "full_replay" is false
    snapshot_lsn   LSN of the snapshot recovery starts from
    message        substring of the inspect output and of what open reports (exception or warnings)

    .venv/bin/python tools/gen_recovery_fixtures.py [OUT_DIR]     (default: recovery-fixtures/)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from memento.identity import IDENTITY_FILE, Mark, MarkFile, read_mark
from memento.log import Log
from memento.record import HEAD_SIZE, TYPE_SEAL, encode, frame_of
from memento.segment import FORMAT_VERSION, HEADER_SIZE, decode_header, encode_header, parse_name
from memento.snapshot import CHUNK_KEY, CHUNK_PREFIX, SnapshotStore

SEGMENT_SIZE = 4096
SECTOR = 512
LOG_ID = b"recovery-fixture"  # 16 bytes: the id of every fixture log
OTHER_LOG_ID = b"another-log-here"  # the log a foreign segment comes from
CLOCK_START = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z (microseconds since the epoch): in the past
FAR_FUTURE = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z: a clock far ahead of any machine running the tests
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "recovery-fixtures"
# Cases of tools/gen_broker_fixtures.py (real broker logs) share the directory and README.md.
BROKER_PREFIX = "broker-"
BROKER_SECTION = "\n## From real broker logs"

Expect = dict[str, Any]
Builder = Callable[[Path], Expect]
CASES: dict[str, Builder] = {}


class Rec(NamedTuple):
    """A record found in a segment file: where it starts, its full size, LSN, type, flags, time, payload."""

    offset: int
    size: int
    lsn: int
    type: int
    flags: int
    time: int
    payload: bytes


class FixedClock:
    """A deterministic wall clock for the log: `start`, then 1 ms later at each reading."""

    def __init__(self, start: int = CLOCK_START) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def case(name: str) -> Callable[[Builder], Builder]:
    """Register a fixture builder under `name` (the directory name)."""

    def register(fn: Builder) -> Builder:
        CASES[name] = fn
        return fn

    return register


# -- building blocks ---------------------------------------------------------------------------------


def rtype(lsn: int) -> int:
    """Record type of the record at `lsn` (types 1..3 rotate)."""
    return 1 + lsn % 3


def payload(lsn: int) -> bytes:
    """Deterministic payload of 20..59 bytes for `lsn`."""
    head = f"record {lsn:06d} ".encode()
    return (head * 8)[: 20 + (lsn * 7) % 40]


def state(lsn: int) -> bytes:
    """Deterministic snapshot state for a snapshot at `lsn`."""
    return f"projection as of LSN {lsn}\n".encode() * 40


def write_log(
    data: Path,
    count: int,
    *,
    snapshots: tuple[int, ...] = (),
    after: int = 0,
    reclaim_to: int | None = None,
    clean: bool = False,
    log_id: bytes = LOG_ID,
    clock_start: int = CLOCK_START,
) -> None:
    """Append `count` records, save a snapshot at each LSN of `snapshots`, append `after` more records,
    optionally reclaim every segment wholly covered by `reclaim_to` (nothing live), and close; unless
    `clean`, MARK is then set back to "not stopped cleanly", as if the process had been killed. Record
    times start at `clock_start`."""
    with Log.open(data, segment_size=SEGMENT_SIZE, log_id=log_id, clock=FixedClock(clock_start)) as log:
        for lsn in range(1, count + 1):
            log.append(rtype(lsn), payload(lsn))
        log.sync()
        for lsn in snapshots:
            log.save_snapshot(lsn, state(lsn))
        for lsn in range(count + 1, count + after + 1):
            log.append(rtype(lsn), payload(lsn))
        log.sync()
        if reclaim_to is not None:
            log.reclaim(reclaim_to, lambda _position: False)
    if not clean:
        set_mark(data, clean_lsn=None)
    tidy(data)


def set_mark(data: Path, *, clean_lsn: int | None, newest_seq: int | None = None) -> None:
    """Rewrite MARK as the engine would have left it: the clean stop's LSN (None: not stopped cleanly)
    and the newest segment created (default: as it is)."""
    mark = read_mark(data)
    assert isinstance(mark, Mark)
    seq, base = mark.newest_seq, mark.newest_base
    if newest_seq is not None:
        seq, base = newest_seq, (parse_name(segments(data)[newest_seq - 1].name) or (0, 0))[1]
    marks = MarkFile(data, mark)
    marks.write(mark.log_id, seq, base, clean_lsn)
    marks.close()


def tidy(data: Path) -> None:
    """Remove what is not state: the LOCK (holds a pid) and LMDB's lock file."""
    for junk in (data / "LOCK", data / "snapshots" / "lock.mdb"):
        if junk.exists():
            junk.unlink()


def segments(data: Path) -> list[Path]:
    """Segment files of `data`, oldest first."""
    return sorted(
        (p for p in (data / "wal").iterdir() if parse_name(p.name) is not None),
        key=lambda p: parse_name(p.name) or (0, 0),
    )


def records(path: Path) -> list[Rec]:
    """The records (seal included) of a healthy segment file, in order."""
    raw = path.read_bytes()
    header = decode_header(raw)
    assert not isinstance(header, str), header
    frame = frame_of(header.version)
    found = []
    pos = HEADER_SIZE
    while pos + frame.head_size <= len(raw):
        length, _crc, kind, flags, _res, lsn, when = frame.unpack(raw, pos)
        if length == 0:
            break
        found.append(
            Rec(pos, 8 + length, lsn, kind, flags, when, raw[pos + frame.head_size : pos + 8 + length])
        )
        pos += 8 + length
    return found


def downgrade(data: Path, version: int = 2) -> None:
    """Rewrite every segment of a healthy log as format `version` (< 3) wrote it: its header's version, and
    records without a time (8 bytes shorter each), then zeros up to the same file size."""
    assert version < 3
    for path in segments(data):
        raw = path.read_bytes()
        header = decode_header(raw)
        assert not isinstance(header, str), header
        out = bytearray(encode_header(header.seq, header.base_lsn, header.size, version=version))
        for rec in records(path):
            out += encode(rec.type, rec.flags, rec.lsn, rec.payload, timed=False)
        path.write_bytes(bytes(out.ljust(len(raw), b"\0")))


def patch(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of a file in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def flip(path: Path, offset: int, mask: int = 0x10) -> None:
    """Flip bits of one byte (a bit-rot stand-in)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))


def cut(path: Path, size: int) -> None:
    """Truncate a file (a write torn by a crash on a file that was not preallocated that far)."""
    os.truncate(path, size)


def expect(
    exit_code: int,
    recovery: str,
    kept: tuple[int, int] | None,
    message: str,
    *,
    snapshot_lsn: int = 0,
    description: str,
    note: str | None = None,
    open_args: dict[str, Any] | None = None,
    inspect_args: list[str] | None = None,
    full_replay: bool = True,
) -> Expect:
    """The expected.json document of a case."""
    doc: Expect = {
        "description": description,
        "inspect_exit": exit_code,
        "recovery": recovery,
        "kept_lsns": list(kept) if kept is not None else None,
        "snapshot_lsn": snapshot_lsn,
        "message": message,
    }
    if note:
        doc["note"] = note
    if open_args:
        doc["open_args"] = open_args
    if inspect_args:
        doc["inspect_args"] = inspect_args
    if not full_replay:
        doc["full_replay"] = False  # replay(after_lsn=0) meets the damage and raises CorruptRecord
    return doc


# -- healthy logs ------------------------------------------------------------------------------------


@case("clean-multi-segment")
def clean_multi_segment(data: Path) -> Expect:
    write_log(data, 200, clean=True)
    assert len(segments(data)) >= 3
    return expect(0, "clean", (1, 200), "clean", description="200 records over 3+ sealed segments")


@case("empty-segment")
def empty_segment(data: Path) -> Expect:
    write_log(data, 0)
    return expect(
        0,
        "clean",
        None,
        "clean",
        description="a fresh log: one preallocated segment with a header and no record",
    )


@case("header-only-segment")
def header_only_segment(data: Path) -> Expect:
    write_log(data, 0)
    cut(segments(data)[0], HEADER_SIZE)
    return expect(
        0,
        "clean",
        None,
        "clean",
        description="the only segment is exactly its 64-byte header (no preallocated zeros)",
    )


@case("preallocated-zeros")
def preallocated_zeros(data: Path) -> Expect:
    write_log(data, 30)
    return expect(
        0,
        "clean",
        (1, 30),
        "clean",
        description="records then the segment's preallocated zeros up to its end",
    )


@case("snapshot-mid-log")
def snapshot_mid_log(data: Path) -> Expect:
    write_log(data, 120, snapshots=(70,), after=40)
    return expect(
        0,
        "clean",
        (1, 160),
        "clean",
        snapshot_lsn=70,
        description="snapshot at LSN 70 of 160; recovery replays 71..160",
    )


@case("version-2-log")
def version_2_log(data: Path) -> Expect:
    write_log(data, 200, snapshots=(100,))
    downgrade(data)
    assert len(segments(data)) >= 3
    return expect(
        0,
        "clean",
        (1, 200),
        "clean",
        snapshot_lsn=100,
        description="a log written by format version 2 (records without a time), 200 records over 3+ "
        "segments, snapshot at LSN 100",
        note="open seals the last version-2 segment in its own layout and appends to a new version-3 "
        "segment; replay reads both layouts",
    )


@case("version-2-then-3")
def version_2_then_3(data: Path) -> Expect:
    write_log(data, 150)
    downgrade(data)
    with Log.open(data, segment_size=SEGMENT_SIZE, clock=FixedClock()) as log:
        for lsn in range(151, 301):
            log.append(rtype(lsn), payload(lsn))
    tidy(data)
    return expect(
        0,
        "clean",
        (1, 300),
        "clean",
        description="LSNs 1..150 in version-2 segments (the last one sealed by the upgrade), then 151..300 "
        "appended by version 3 in version-3 segments",
    )


@case("version-2-torn-tail")
def version_2_torn_tail(data: Path) -> Expect:
    write_log(data, 100)
    downgrade(data)
    tail = segments(data)[-1]
    last = records(tail)[-1]
    flip(tail, last.offset + last.size - 1)
    return expect(
        1,
        "repaired",
        (1, last.lsn - 1),
        "record checksum mismatch",
        description="a version-2 log whose last record's payload is damaged; only zeros follow",
    )


@case("clock-moved-back")
def clock_moved_back(data: Path) -> Expect:
    write_log(data, 120, clock_start=FAR_FUTURE)
    return expect(
        0,
        "repaired",
        (1, 120),
        "clock moved back by",
        description="the records were appended at 2100-01-01 by the log's clock: far ahead of the wall clock "
        "at open, as after a clock that ran ahead and was set back",
        note="nothing is damaged or changed; open and inspect warn (deadlines taken from the old clock, such "
        "as message TTLs, lie that much further in the future); 'repaired' here means open succeeds with a "
        "warning",
    )


# -- torn tails (repairable) -------------------------------------------------------------------------


@case("tail-cut-inside-length")
def tail_cut_inside_length(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    last = records(tail)[-1]
    cut(tail, last.offset + 2)
    return expect(
        1,
        "repaired",
        (1, last.lsn - 1),
        "record header cut by the end of the file",
        description="the file ends 2 bytes into the last record's length word",
    )


@case("tail-cut-inside-checksum")
def tail_cut_inside_checksum(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    last = records(tail)[-1]
    cut(tail, last.offset + 6)
    return expect(
        1,
        "repaired",
        (1, last.lsn - 1),
        "record header cut by the end of the file",
        description="the file ends inside the last record's crc32c",
    )


@case("length-past-end")
def length_past_end(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    last = records(tail)[-1]
    patch(tail, last.offset, (0x00FF_FFF0).to_bytes(4, "little"))
    return expect(
        1,
        "repaired",
        (1, last.lsn - 1),
        "runs past the end of the file",
        description="the last record's length points beyond the end of the segment",
    )


@case("bad-checksum-last-then-zeros")
def bad_checksum_last(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    last = records(tail)[-1]
    flip(tail, last.offset + last.size - 1)
    return expect(
        1,
        "repaired",
        (1, last.lsn - 1),
        "record checksum mismatch",
        description="the last record's payload is damaged; only zeros follow",
    )


@case("zeroed-sector-at-tail")
def zeroed_sector_at_tail(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    recs = records(tail)
    end = recs[-1].offset + recs[-1].size
    sector = (end - 1) // SECTOR * SECTOR
    patch(tail, sector, bytes(SECTOR))
    kept = [r for r in recs if r.offset + r.size <= sector]
    return expect(
        1,
        "repaired",
        (1, kept[-1].lsn),
        "torn tail",
        description="the 512-byte sector holding the end of the data reads back as zeros",
    )


@case("stale-lower-lsn-after-tail")
def stale_after_tail(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    recs = records(tail)
    end = recs[-1].offset + recs[-1].size
    patch(tail, end, encode(rtype(3), 0, 3, payload(3)))
    return expect(
        1,
        "repaired",
        (1, 100),
        "record has LSN 3 where 101 was expected",
        description="a valid-crc record with an old LSN (3) right after the last record, as a "
        "reused file would hold; it is junk and is quarantined",
    )


@case("zeros-then-stale-junk")
def zeros_then_junk(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    recs = records(tail)
    end = recs[-1].offset + recs[-1].size
    patch(tail, end + 256, encode(rtype(5), 0, 5, payload(5)) + b"\xde\xad\xbe\xef" * 8)
    return expect(
        1,
        "repaired",
        (1, 100),
        "non-zero bytes after the end of data",
        description="zeros after the last record, then an old record and garbage: not a record "
        "that could follow, so it is a torn tail: quarantined and zeroed",
        note="zeroing the junk means later appends can never run into it",
    )


@case("crash-mid-rollover")
def crash_mid_rollover(data: Path) -> Expect:
    write_log(data, 200)
    segs = segments(data)
    second = segs[1]
    first_lsn = records(second)[0].lsn
    for seg in segs[1:]:
        seg.unlink()
    set_mark(data, clean_lsn=None, newest_seq=1)  # segment 2 was never created: MARK still names 1
    tmp = second.with_name(second.name + ".tmp")
    tmp.write_bytes(encode_header(2, first_lsn, SEGMENT_SIZE)[:40])
    return expect(
        1,
        "repaired",
        (1, first_lsn - 1),
        "unfinished segment",
        description="segment 1 is sealed; the crash hit while segment 2 was still a .tmp "
        "(its records were never durable); open drops the .tmp and creates segment 2",
    )


@case("leftover-compaction-temp-file")
def leftover_temp(data: Path) -> Expect:
    write_log(data, 150)
    segs = segments(data)
    copy = segs[0].with_name(segs[0].name + ".tmp")
    copy.write_bytes(segs[0].read_bytes()[:1000])
    return expect(
        1,
        "repaired",
        (1, 150),
        "unfinished segment",
        description="a half-written *.tmp copy of segment 1 next to the real one; open deletes it",
        note="the engine's compaction copies records forward into the log and makes no temp "
        "file; any *.tmp in wal/ is unfinished work and is dropped",
    )


# -- refused -----------------------------------------------------------------------------------------


@case("bit-flip-then-valid-records")
def bit_flip_then_valid(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    recs = [r for r in records(tail) if r.type != TYPE_SEAL]
    victim = recs[len(recs) // 2]
    flip(tail, victim.offset + HEAD_SIZE + 3)
    return expect(
        2,
        "refused",
        None,
        "followed by a valid record",
        description=f"one bit flipped in LSN {victim.lsn}, mid last segment; valid records follow",
    )


@case("bit-flip-sealed-segment")
def bit_flip_sealed(data: Path) -> Expect:
    write_log(data, 200)
    first = segments(data)[0]
    recs = records(first)
    victim = recs[10]
    flip(first, victim.offset + HEAD_SIZE + 1)
    return expect(
        2,
        "refused",
        None,
        "record checksum mismatch",
        description=f"one bit flipped in LSN {victim.lsn} of sealed segment 1",
    )


@case("bit-flip-covered-segment")
def bit_flip_covered(data: Path) -> Expect:
    write_log(data, 260, snapshots=(250,))
    first = segments(data)[0]
    victim = records(first)[10]
    flip(first, victim.offset + HEAD_SIZE + 1)
    return expect(
        2,
        "clean",
        (1, 260),
        "record checksum mismatch",
        snapshot_lsn=250,
        description=f"one bit flipped in LSN {victim.lsn} of segment 1, which the snapshot at LSN 250 covers",
        note="open only checks the headers of segments the snapshot covers (unless "
        "full_check=True), so it opens clean; reading a damaged record later (log.read, "
        "replay from LSN 0) raises CorruptRecord. inspect and verify scan everything and "
        "report the damage as refused",
        full_replay=False,
    )


@case("bit-flip-seal-record")
def bit_flip_seal(data: Path) -> Expect:
    write_log(data, 200)
    first = segments(data)[0]
    seal = records(first)[-1]
    assert seal.type == TYPE_SEAL
    flip(first, seal.offset + 8)
    return expect(
        2, "refused", None, "in a sealed segment", description="the seal record of segment 1 is damaged"
    )


@case("lsn-gap")
def lsn_gap(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    recs = records(tail)
    gap = recs[len(recs) // 2]
    rewritten = b"".join(
        encode(rtype(r.lsn + 1), 0, r.lsn + 1, payload(r.lsn + 1)) for r in recs if r.offset >= gap.offset
    )
    patch(tail, gap.offset, rewritten + bytes(SEGMENT_SIZE - gap.offset - len(rewritten)))
    return expect(
        2,
        "refused",
        None,
        f"record has LSN {gap.lsn + 1} where {gap.lsn} was expected",
        description=f"LSN {gap.lsn} is missing: the records after it are valid but skip it",
    )


@case("missing-middle-segment")
def missing_middle(data: Path) -> Expect:
    write_log(data, 260)
    segs = segments(data)
    assert len(segs) >= 4
    segs[1].unlink()
    return expect(
        2, "refused", None, "segments 2..2 are missing", description="segment 2 of 4+ is gone; no snapshot"
    )


@case("missing-covered-middle-segment")
def missing_covered_middle(data: Path) -> Expect:
    write_log(data, 260, snapshots=(250,))
    segs = segments(data)
    segs[1].unlink()
    return expect(
        2,
        "refused",
        None,
        "segments 2..2 are missing",
        snapshot_lsn=250,
        description="segment 2 is gone although the snapshot (LSN 250) covers it",
        note="covered is not the same as dead: the projection may still point into segment 2 for "
        "message bodies, and reclamation only ever deletes the oldest segments, so a hole "
        "means lost data and is refused",
    )


@case("missing-oldest-covered-segment")
def missing_oldest_covered(data: Path) -> Expect:
    write_log(data, 260, snapshots=(250,))
    segs = segments(data)
    second_base = (parse_name(segs[1].name) or (0, 0))[1]
    segs[0].unlink()
    return expect(
        0,
        "clean",
        (second_base, 260),
        "clean",
        snapshot_lsn=250,
        description="segment 1 (wholly covered by the snapshot at 250) is gone, as if reclaimed",
        note="indistinguishable from legitimate reclamation, so the log opens clean; if a body the "
        "projection still needs lived there, only the application notices (log.read of a "
        "position in segment 1 raises KeyError) and must treat it as loss",
    )


@case("truncated-header-last-segment")
def truncated_header(data: Path) -> Expect:
    write_log(data, 200)
    tail = segments(data)[-1]
    cut(tail, 30)
    return expect(
        2,
        "refused",
        None,
        "segment header invalid",
        description="the last segment is 30 bytes: its header is cut",
        note="segments appear under their final name only after their header is synced, so a "
        "cut header is media damage, not a crash artefact",
    )


@case("zero-length-segment")
def zero_length_segment(data: Path) -> Expect:
    write_log(data, 200)
    tail = segments(data)[-1]
    cut(tail, 0)
    return expect(
        2, "refused", None, "segment header invalid", description="the last segment file is empty (0 bytes)"
    )


@case("snapshot-newer-than-log")
def snapshot_newer(data: Path) -> Expect:
    write_log(data, 100)
    with SnapshotStore(data / "snapshots") as store:
        store.save(300, state(300))
    tidy(data)
    return expect(
        2,
        "refused",
        None,
        "snapshot is beyond the end of the log",
        description="the snapshot is at LSN 300, the log ends at 100 (segments lost or replaced)",
    )


@case("bad-newest-snapshot-chunk")
def bad_snapshot_chunk(data: Path) -> Expect:
    write_log(data, 120, snapshots=(60, 100))
    import lmdb

    env = lmdb.open(str(data / "snapshots"), subdir=True)
    with env.begin(write=True) as txn:
        key = CHUNK_KEY.pack(CHUNK_PREFIX, 100, 0)
        chunk = bytearray(txn.get(key) or b"")
        chunk[len(chunk) // 2] ^= 0x01
        txn.put(key, bytes(chunk))
    env.close()
    tidy(data)
    return expect(
        1,
        "repaired",
        (1, 120),
        "checksum mismatch",
        snapshot_lsn=60,
        description="the newest snapshot (LSN 100) has a damaged chunk; recovery falls back to "
        "the one at LSN 60 and replays 61..120",
        note="nothing changes on disk; 'repaired' here means open succeeds with a warning",
    )


@case("missing-lmdb")
def missing_lmdb(data: Path) -> Expect:
    write_log(data, 260, snapshots=(250,), reclaim_to=250)
    assert (parse_name(segments(data)[0].name) or (0, 0))[1] > 1, "reclaim deleted nothing"
    shutil.rmtree(data / "snapshots")
    first = (parse_name(segments(data)[0].name) or (0, 0))[1]
    return expect(
        2,
        "refused",
        None,
        f"log starts at LSN {first}",
        description="the snapshot store is gone and the segments it covered were reclaimed",
    )


@case("missing-lmdb-full-log")
def missing_lmdb_full(data: Path) -> Expect:
    write_log(data, 150, snapshots=(100,))
    shutil.rmtree(data / "snapshots")
    return expect(
        0,
        "clean",
        (1, 150),
        "snapshot store",
        snapshot_lsn=0,
        description="the snapshot store is gone but every segment is there: replay from LSN 1",
    )


@case("foreign-segment")
def foreign_segment(data: Path) -> Expect:
    write_log(data, 260)
    other = data.parent / "other"
    write_log(other, 260, log_id=OTHER_LOG_ID)
    mine, theirs = segments(data), segments(other)
    assert [p.name for p in mine] == [p.name for p in theirs]
    shutil.copyfile(theirs[2], mine[2])
    shutil.rmtree(other)
    return expect(
        2,
        "refused",
        None,
        f"segment belongs to log {OTHER_LOG_ID.hex()}, this log is {LOG_ID.hex()}",
        description=f"segment 3 was copied from another log with the same layout (same names, LSNs "
        f"and record sizes) whose id is {OTHER_LOG_ID.hex()}",
        note="each segment header (format 3) carries the log id; salvage keeps segments 1-2 and "
        "quarantines segment 3 and what follows",
    )


@case("missing-newest-after-clean-stop")
def missing_newest_clean(data: Path) -> Expect:
    write_log(data, 260, clean=True)
    segs = segments(data)
    segs[-1].unlink()
    return expect(
        2,
        "refused",
        None,
        f"{segs[-1].name}: newest segment {len(segs)} is missing",
        description="the log was stopped cleanly at LSN 260, then its newest segment was deleted",
        note="MARK names the newest segment created and the clean stop's LSN (260); both checks "
        "fire. Salvage accepts the loss, continues after the last segment left and rewrites MARK",
    )


@case("missing-newest-after-crash")
def missing_newest_crash(data: Path) -> Expect:
    write_log(data, 260)
    segs = segments(data)
    segs[-1].unlink()
    return expect(
        2,
        "refused",
        None,
        "missing: the log's high-water mark says",
        description="the process died (no clean stop), then the newest segment was deleted",
        note="MARK is updated after each new segment is created and before any record in it is "
        "acknowledged, so a missing newest segment is loss, not a crash artefact (a crash mid-"
        "rollover leaves MARK on the sealed segment: see crash-mid-rollover)",
    )


@case("missing-identity-file")
def missing_identity(data: Path) -> Expect:
    write_log(data, 200)
    (data / IDENTITY_FILE).unlink()
    return expect(
        2,
        "refused",
        None,
        f"IDENTITY is missing but segments carry log id {LOG_ID.hex()}",
        description="IDENTITY (the log's id, written once when the log was created) is gone",
        note="only a fresh or pre-format-3 log has no IDENTITY; salvage writes it again with the "
        "id the segments and MARK carry",
    )


# -- unsupported -------------------------------------------------------------------------------------


@case("unknown-record-type")
def unknown_type(data: Path) -> Expect:
    write_log(data, 100)
    tail = segments(data)[-1]
    recs = records(tail)
    end = recs[-1].offset + recs[-1].size
    patch(tail, end, encode(0xF7, 0, 101, b"from a newer engine"))
    return expect(
        3,
        "unsupported",
        None,
        "unknown record type 247",
        description="LSN 101 has type 0xF7, an engine type this version does not know",
        open_args={"registry": [1, 2, 3]},
        note="Log.open(registry=None) accepts every type, so the test opens with the types "
        "the log uses; inspect knows the engine's own types and flags 0xF7 without help",
    )


@case("future-version")
def future_version(data: Path) -> Expect:
    write_log(data, 200)
    tail = segments(data)[-1]
    seq, base = parse_name(tail.name) or (0, 0)
    future = FORMAT_VERSION + 1
    patch(tail, 0, encode_header(seq, base, SEGMENT_SIZE, version=future))
    return expect(
        3,
        "unsupported",
        None,
        f"segment format version {future} is newer than {FORMAT_VERSION}",
        description=f"the last segment's header says format version {future}",
    )


# -- driver ------------------------------------------------------------------------------------------


def generate(out: Path, only: list[str] | None = None) -> list[str]:
    """Rebuild every case (or those named) under `out`; returns the case names built."""
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for name, build in CASES.items():
        if only and name not in only:
            continue
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        data = target / "data"
        data.mkdir(parents=True)
        doc = {"case": name, **build(data)}
        (target / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")
        built.append(name)
    if not only:
        write_readme(out)
    return built


def write_readme(out: Path) -> None:
    """An index of the cases (rebuilt with them, so it never drifts)."""
    lines = [
        "# Recovery fixtures",
        "",
        "Damaged Memento log directories and what must happen to each. Rebuilt by",
        "`tools/gen_recovery_fixtures.py` (do not edit by hand); checked by",
        "`tests/memento/test_fixtures.py`.",
        "`expected.json` fields: see the generator's docstring. inspect exit: 0 clean, 1 repairable,",
        "2 refused, 3 unsupported.",
        "",
        "| case | inspect | open | what |",
        "|---|---|---|---|",
    ]
    for case_dir in sorted(p for p in out.iterdir() if (p / "expected.json").exists()):
        if case_dir.name.startswith(BROKER_PREFIX):
            continue
        doc = json.loads((case_dir / "expected.json").read_text())
        what = doc["description"] + (f" ({doc['note']})" if "note" in doc else "")
        lines.append(f"| {case_dir.name} | {doc['inspect_exit']} | {doc['recovery']} | {what} |")
    readme = out / "README.md"
    # The table of the cases built from real broker logs is tools/gen_broker_fixtures.py's: kept as is.
    theirs = readme.read_text().partition(BROKER_SECTION)[1:] if readme.exists() else ("", "")
    readme.write_text("\n".join(lines) + "\n" + "".join(theirs))


def main(argv: list[str]) -> None:
    """Command line: gen_recovery_fixtures.py [OUT_DIR] [CASE...]."""
    out = Path(argv[0]) if argv else DEFAULT_OUT
    names = generate(out, argv[1:] or None)
    print(f"built {len(names)} cases in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
