"""Read-only inspection of a log directory: what `memento inspect`, `verify` and `replay` see.

Strategy: `Log.open` repairs (it drops *.tmp files and truncates torn tails) and takes the directory lock,
so the tools never use it. They read files with plain `open(..., "rb")`, open the snapshot store read-only
without a lock, and reuse the engine's pure functions (`scan_segment`, `classify`) so that what a tool
reports is what recovery would do. Two differences, both stricter: every segment is scanned in full (as
`Log.open(full_check=True)` does), and without an explicit registry a record of an engine type this
version does not know (0xF0..0xFE) is reported as unsupported.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Iterator, Set
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import crc32c

from memento.errors import CorruptRecord
from memento.identity import IDENTITY_FILE, MARK_FILE, Mark, read_identity, read_mark
from memento.record import (
    ENGINE_TYPES,
    LEGACY_HEAD,
    TYPE_SEAL,
    USER_TYPES,
    Frame,
    Record,
    RecordPosition,
    frame_of,
)
from memento.recovery import (
    ACCEPTED,
    CLEAN,
    REFUSED,
    REPAIRABLE,
    UNSUPPORTED,
    Finding,
    Verdict,
    classify,
    clock_warning,
    resolve_identity,
)
from memento.salvage import load_accepted
from memento.scan import SegmentScan, last_nonzero_end, scan_segment
from memento.segment import HEADER_SIZE, SUFFIX, TMP_SUFFIX, parse_name
from memento.snapshot import (
    STATUS_DAMAGED,
    STATUS_FALLBACK,
    STATUS_UNREADABLE,
    Snapshot,
    SnapshotStore,
)

WAL_DIR: Final = "wal"
SNAPSHOT_DIR: Final = "snapshots"
LOCK_FILE: Final = "LOCK"
EXIT_CODES: Final = {CLEAN: 0, REPAIRABLE: 1, REFUSED: 2, UNSUPPORTED: 3}
EXIT_BAD_INPUT: Final = 4
EXIT_IO_ERROR: Final = 74  # a file could not be read (sysexits' EX_IOERR, as `ottermq serve` uses)
_RANK: Final = {CLEAN: 0, REPAIRABLE: 1, REFUSED: 2, UNSUPPORTED: 3}
DEFAULT_TYPES: Final = USER_TYPES | ENGINE_TYPES


class NotALogDir(Exception):
    """The path given to a tool is missing, not a directory, or not a Memento log directory."""


@dataclass(slots=True)
class SegmentReport:
    """One segment as inspected: where its valid data ends and what it holds."""

    name: str
    seq: int
    base_lsn: int
    size: int
    version: int | None
    header_problem: str | None
    records: int = 0
    first_lsn: int | None = None
    last_lsn: int | None = None
    data_end: int = HEADER_SIZE
    sealed: bool = False
    by_type: dict[int, int] = field(default_factory=dict)
    junk_bytes: int = 0  # non-zero bytes after the end of valid data (torn or stale)

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "file": self.name,
            "seq": self.seq,
            "base_lsn": self.base_lsn,
            "size": self.size,
            "version": self.version,
            "header_problem": self.header_problem,
            "records": self.records,
            "first_lsn": self.first_lsn,
            "last_lsn": self.last_lsn,
            "data_end": self.data_end,
            "sealed": self.sealed,
            "junk_bytes": self.junk_bytes,
            "records_by_type": {str(t): n for t, n in sorted(self.by_type.items())},
        }


@dataclass(slots=True)
class SnapshotReport:
    """One snapshot as its manifest describes it, and whether it verifies (when checked)."""

    lsn: int
    raw_size: int
    stored_size: int
    chunks: int
    damage: str | None
    verified: bool

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "lsn": self.lsn,
            "raw_size": self.raw_size,
            "stored_size": self.stored_size,
            "chunks": self.chunks,
            "damage": self.damage,
            "verified": self.verified,
        }


@dataclass(slots=True)
class Inspection:
    """Everything `inspect_log` found, and the verdict recovery would reach."""

    path: Path
    segments: list[SegmentReport]
    snapshots: list[SnapshotReport]
    snapshot_lsn: int
    snapshot_status: str
    snapshot_note: str | None
    temp_files: list[str]
    stray_files: list[str]
    findings: list[Finding]
    status: str
    end_lsn: int
    verdict: Verdict
    scans: list[SegmentScan] = field(repr=False)
    log_id: bytes | None = None
    last_stop: LastStop | None = None
    warnings: list[str] = field(default_factory=list)  # what open would warn about besides the findings
    types: frozenset[int] = DEFAULT_TYPES  # the record types in use (`iter_records` checks unscanned ones)

    @property
    def partial(self) -> bool:
        """Whether segments were only header-checked (`inspect_log(quick=True)`): damage inside them is
        not in the findings yet."""
        return any(scan.header is not None and not scan.scanned for scan in self.scans)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 repairable, 2 refused, 3 unsupported version."""
        return EXIT_CODES[self.status]

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "path": str(self.path),
            "status": self.status,
            "exit_code": self.exit_code,
            "end_lsn": self.end_lsn,
            "snapshot_lsn": self.snapshot_lsn,
            "snapshot_status": self.snapshot_status,
            "snapshot_note": self.snapshot_note,
            "segments": [s.as_json() for s in self.segments],
            "snapshots": [s.as_json() for s in self.snapshots],
            "temp_files": self.temp_files,
            "stray_files": self.stray_files,
            "log_id": self.log_id.hex() if self.log_id is not None else None,
            "last_stop": self.last_stop.as_json() if self.last_stop is not None else None,
            "warnings": self.warnings,
            "findings": [
                {
                    "kind": f.kind,
                    "severity": f.severity,
                    "segment": f.segment,
                    "offset": f.offset,
                    "lsn": f.lsn,
                    "message": f.message,
                }
                for f in self.findings
            ],
        }


@dataclass(frozen=True, slots=True)
class LastStop:
    """How the log was last left (MARK) and who holds or held its LOCK."""

    clean: bool | None  # None: no readable MARK (a log written before format 3, or damage)
    clean_lsn: int | None
    newest_segment: int | None
    lock_pid: int | None  # the pid LOCK holds (its last holder when nobody holds it now)
    lock_alive: bool | None  # whether that process runs (None: no pid)
    lock_error: str | None = None  # why LOCK could not be read

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "clean": self.clean,
            "clean_lsn": self.clean_lsn,
            "newest_segment": self.newest_segment,
            "lock_pid": self.lock_pid,
            "lock_process_running": self.lock_alive,
            "lock_error": self.lock_error,
        }

    def describe(self) -> list[str]:
        """The text lines of `memento inspect`."""
        if self.clean is None:
            stop = "last stop: unknown (no readable MARK)"
        elif self.clean:
            stop = f"last stop: clean, at LSN {self.clean_lsn}"
        else:
            stop = "last stop: not clean (the log is open now, or its process died)"
        if self.lock_error is not None:
            lock = f"lock: {self.lock_error}"
        elif self.lock_pid is None:
            lock = "lock: no pid in LOCK"
        elif self.lock_alive:
            held = "holds the log" if self.clean is False else "is running (the pid may have been reused)"
            lock = f"lock: process {self.lock_pid} {held}"
        else:
            lock = f"lock: free (LOCK names process {self.lock_pid}, which is not running)"
        return [stop, lock]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def last_stop(root: Path, mark: Mark | str | None) -> LastStop:
    """What MARK and LOCK say about the last stop and the lock's holder (read-only: the lock is not
    tried, which could make a starting owner fail)."""
    pid: int | None = None
    error: str | None = None
    try:
        text = (root / LOCK_FILE).read_text("ascii", "replace").strip()
        pid = int(text) if text.isdigit() else None
    except FileNotFoundError:
        pass
    except OSError as exc:  # only the holder's pid is lost: the rest of the report stands
        error = f"{root / LOCK_FILE}: {exc.strerror or exc}"
    valid = mark if isinstance(mark, Mark) else None
    return LastStop(
        valid.clean_lsn is not None if valid is not None else None,
        valid.clean_lsn if valid is not None else None,
        valid.newest_seq if valid is not None else None,
        pid,
        _pid_alive(pid) if pid is not None and pid > 0 else None,
        error,
    )


def check_log_dir(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path if it is a Memento log directory; raise NotALogDir with a one-line reason."""
    root = Path(path)
    if not root.exists():
        raise NotALogDir(f"{root}: no such directory")
    if not root.is_dir():
        raise NotALogDir(f"{root}: is a file, not a log directory")
    if not (root / WAL_DIR).is_dir() and not (root / SNAPSHOT_DIR).is_dir():
        raise NotALogDir(f"{root}: not a Memento log directory (it has neither wal/ nor snapshots/)")
    return root


def _is_log_dir(path: Path) -> bool:
    return (path / WAL_DIR).is_dir() or (path / SNAPSHOT_DIR).is_dir()


def find_log_dir(path: str | os.PathLike[str]) -> tuple[Path, bool]:
    """The log directory a tool should read for `path`, and whether it is a subdirectory of `path`.

    An application often keeps its log one level down (a data directory holding `log/` and other files),
    so when `path` holds no log but exactly one of its immediate subdirectories does, that one is used.
    None or several: NotALogDir, naming what was found so the user can point at the right one.
    """
    root = Path(path)
    if not root.exists():
        raise NotALogDir(f"{root}: no such directory")
    if not root.is_dir():
        raise NotALogDir(f"{root}: is a file, not a log directory")
    if _is_log_dir(root):
        return root, False
    children = sorted(child for child in root.iterdir() if child.is_dir())  # an OSError names root
    logs = [child for child in children if _is_log_dir(child)]
    if len(logs) == 1:
        return logs[0], True
    if logs:
        raise NotALogDir(
            f"{root}: not a Memento log directory, and several subdirectories are: "
            f"{', '.join(child.name for child in logs)}; name one of them"
        )
    found = f"; its subdirectories ({', '.join(c.name for c in children)}) are not either" if children else ""
    raise NotALogDir(f"{root}: not a Memento log directory (it has neither wal/ nor snapshots/){found}")


def parse_types(text: str) -> frozenset[int]:
    """Parse a record type list such as '1-3,7' (what `--types` takes)."""
    found: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        first = int(lo, 0)
        found.update(range(first, int(hi, 0) + 1) if sep else (first,))
    return frozenset(found)


def _read(path: Path, size: int = -1) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as exc:
        if exc.filename is None:  # a read error on the open file: name it
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def _count_types(data: bytes, end: int, frame: Frame) -> dict[int, int]:
    """Records by type between the header and `end` (already validated by the scan); seals excluded."""
    counts: dict[int, int] = {}
    pos = HEADER_SIZE
    unpack = LEGACY_HEAD.unpack_from  # the fields every format version has
    head_size = frame.head_size
    while pos + head_size <= end:
        length, _crc, rtype, _flags, _res, _lsn = unpack(data, pos)
        if rtype != TYPE_SEAL:
            counts[rtype] = counts.get(rtype, 0) + 1
        pos += 8 + length
    return counts


def _segment_report(scan: SegmentScan, data: bytes, by_type: bool = True) -> SegmentReport:
    header = scan.header
    report = SegmentReport(
        scan.name,
        scan.seq,
        scan.base_lsn,
        scan.size,
        header.version if header is not None else None,
        scan.header_problem,
    )
    if header is None or not scan.scanned:
        return report
    report.records = scan.count
    if scan.count:
        report.first_lsn = scan.base_lsn
        report.last_lsn = scan.last_lsn
    report.data_end = scan.data_end
    report.sealed = scan.sealed
    if not by_type:  # a listing or a trace: they show neither (and the zeros after data are tens of MB)
        return report
    report.by_type = _count_types(data, scan.data_end, frame_of(header.version))
    report.junk_bytes = max(scan.dirty_end, last_nonzero_end(data, scan.data_end)) - scan.data_end
    return report


def _snapshot_findings(store: SnapshotStore) -> list[Finding]:
    """What the snapshot store's state means for recovery, as `Log.open` treats it."""
    where = str(store.path)
    if store.status in (STATUS_DAMAGED, STATUS_UNREADABLE):
        return [Finding("snapshot-damaged", REFUSED, "", -1, -1, f"{where}: {store.fallback_reason}")]
    if store.status == STATUS_FALLBACK:
        return [
            Finding(
                "snapshot-fallback",
                REPAIRABLE,
                "",
                -1,
                -1,
                f"{where}: newest snapshot damaged, falling back: {store.fallback_reason}",
            )
        ]
    return []


def _store_fallback(findings: list[Finding], scans: list[SegmentScan], verdict: Verdict) -> list[Finding]:
    """An unusable snapshot store is repairable when the log still holds every record from LSN 1: open
    then replays the whole log and replaces the store (memento.opening.broken_store), so say that."""
    if (scans and scans[0].base_lsn != 1) or verdict.status not in (CLEAN, REPAIRABLE):
        return findings
    return [
        replace(
            f,
            severity=REPAIRABLE,
            message=f"{f.message}; the log holds every record from LSN 1: open replays all of it and "
            "replaces the store",
        )
        if f.kind == "snapshot-damaged"
        else f
        for f in findings
    ]


def inspect_log(
    path: str | os.PathLike[str],
    *,
    registry: Set[int] | None = None,
    verify_snapshots: bool = False,
    progress: Callable[[str], None] | None = None,
    by_type: bool = True,
    quick: bool = False,
) -> Inspection:
    """Inspect the log directory at `path` without modifying it.

    `registry` lists the record types in use (default: every caller type plus the engine's known ones).
    `verify_snapshots` also checks every chunk of every snapshot (not only the one recovery would use).
    `progress` is called with each segment's name before it is read. `by_type` False leaves the
    segments' counts by type and bytes after data uncounted (a record listing does not show them: one
    pass less over the log).
    `quick` reads only the headers of all segments but the last (scanned whole, as it is where the log
    ends): the identity, MARK, snapshot and segment-sequence checks all run, but damage inside an earlier
    segment is found only by `iter_records`, which checks such a segment record by record as it reads it
    (CorruptRecord). What a record listing or a trace needs, at a fraction of a full scan's cost.
    """
    root = check_log_dir(path)
    known = frozenset(registry) | ENGINE_TYPES if registry is not None else DEFAULT_TYPES
    identity_raw = read_identity(root)
    mark_raw = read_mark(root)
    with SnapshotStore(root / SNAPSHOT_DIR, readonly=True) as store:
        store_id = store.recorded_id()
        snapshot = store.load_latest()
        infos = store.list()
        snapshots = []
        for info in infos:
            damage = store.verify(info) if verify_snapshots else info.damage
            snapshots.append(
                SnapshotReport(
                    info.lsn, info.raw_size, info.stored_size, len(info.chunks), damage, verify_snapshots
                )
            )
        findings = _snapshot_findings(store)
        snapshot_status, snapshot_note = store.status, store.fallback_reason
    if verify_snapshots:
        for snap in snapshots:
            if snap.damage is not None and not any(snap.damage in f.message for f in findings):
                findings.append(
                    Finding(
                        "snapshot-damaged", REFUSED, "", -1, snap.lsn, f"snapshot {snap.lsn}: {snap.damage}"
                    )
                )
    snapshot_lsn = snapshot.lsn if snapshot is not None else 0
    wal = root / WAL_DIR
    names = sorted(os.listdir(wal)) if wal.is_dir() else []
    temp_files = [n for n in names if n.endswith(TMP_SUFFIX)]
    stray = [n for n in names if not n.endswith(TMP_SUFFIX) and parse_name(n) is None]
    for name in (n + TMP_SUFFIX for n in (IDENTITY_FILE, MARK_FILE)):
        if (root / name).exists():
            findings.append(
                Finding("temp-file", REPAIRABLE, name, -1, -1, f"{name}: unfinished; open deletes it")
            )
    for name in temp_files:
        findings.append(
            Finding(
                "temp-file",
                REPAIRABLE,
                name,
                -1,
                -1,
                f"{name}: unfinished segment (crash during rollover); open deletes it",
            )
        )
    segment_names = sorted(
        (n for n in names if n.endswith(SUFFIX) and parse_name(n) is not None),
        key=lambda n: parse_name(n) or (0, 0),
    )
    scans: list[SegmentScan] = []
    segments: list[SegmentReport] = []
    for i, name in enumerate(segment_names):
        if progress is not None:
            progress(name)
        if quick and i + 1 < len(segment_names):
            head = _read(wal / name, HEADER_SIZE)
            scan = scan_segment(name, head, known, headers_only=True)
            scan = replace(scan, size=os.path.getsize(wal / name))
            data = head
        else:
            data = _read(wal / name)
            scan = scan_segment(name, data, known)
        scans.append(scan)
        segments.append(_segment_report(scan, data, by_type))
    identity = resolve_identity(str(root), identity_raw, mark_raw, scans, store_id)
    # Damage an earlier salvage accepted (memento.salvage) is reported as such, as `Log.open` does.
    verdict = classify(scans, snapshot_lsn, identity, accepted=load_accepted(root))
    if snapshot_status in (STATUS_DAMAGED, STATUS_UNREADABLE):
        findings = _store_fallback(findings, scans, verdict)
    findings.extend(verdict.findings)
    status = max(
        (f.severity for f in findings if f.severity != ACCEPTED), key=_RANK.__getitem__, default=CLEAN
    )
    moved_back = clock_warning(scans, time.time_ns() // 1000)
    return Inspection(
        root,
        segments,
        snapshots,
        snapshot_lsn,
        snapshot_status,
        snapshot_note,
        temp_files,
        stray,
        findings,
        status,
        verdict.end_lsn,
        verdict,
        scans,
        identity.log_id,
        last_stop(root, mark_raw),
        [moved_back] if moved_back is not None else [],
        known,
    )


def load_snapshot(path: Path) -> Snapshot | None:
    """The snapshot recovery would start from (read-only)."""
    with SnapshotStore(path / SNAPSHOT_DIR, readonly=True) as store:
        return store.load_latest()


def iter_records(
    inspection: Inspection,
    after_lsn: int = 0,
    to_lsn: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Record]:
    """Valid records with after_lsn < LSN <= to_lsn (default: up to where recovery would keep the log),
    in order, read-only. Stops at the first damage, as recovery's cut does.

    A segment the inspection scanned is read as the scan found it. One it only header-checked
    (`inspect_log(quick=True)`) is checked record by record as it is read: length, crc, LSN following
    the previous one, a known type; the first failure raises CorruptRecord naming the segment, offset
    and LSN (the caller decides what to say: a full inspection tells what recovery would do).

    Segments are mapped, not read: a 64 MiB segment is not copied whole (each payload is a copy), and
    records are built without a constructor call each, since listings read every record of a log."""
    last = inspection.end_lsn if to_lsn is None else min(to_lsn, inspection.end_lsn)
    wal = inspection.path / WAL_DIR
    scans = inspection.scans
    known = inspection.types
    new = tuple.__new__
    crc = crc32c.crc32c
    for i, scan in enumerate(scans):
        if scan.header is None or scan.base_lsn > last:
            return
        if i + 1 < len(scans) and scans[i + 1].base_lsn <= after_lsn + 1:
            continue
        if progress is not None:
            progress(scan.name)
        frame = frame_of(scan.header.version)
        unpack = frame.unpack
        head_size = frame.head_size
        seq = scan.seq
        with mapped(wal / scan.name) as data:
            pos = HEADER_SIZE
            if scan.scanned:
                end = scan.data_end
                while pos + head_size <= end:
                    length, _crc, rtype, flags, _res, lsn, when = unpack(data, pos)
                    stop = pos + 8 + length
                    if lsn > last:
                        return
                    if rtype != TYPE_SEAL and lsn > after_lsn:
                        position = new(RecordPosition, (seq, pos))
                        yield new(Record, (lsn, rtype, flags, data[pos + head_size : stop], position, when))
                    pos = stop
                if scan.damage is not None or scan.unknown_type is not None:
                    return
                continue
            view = memoryview(data)
            try:
                end = len(data)
                expected = scan.base_lsn
                min_len = frame.min_len
                while pos + head_size <= end:
                    length, stored, rtype, flags, _res, lsn, when = unpack(data, pos)
                    stop = pos + 8 + length
                    if length == 0 or rtype == TYPE_SEAL:
                        break  # the end of this segment's data (a seal's own checks: the next header's)
                    if length < min_len or stop > end or lsn != expected:
                        raise corrupt_at(scan, pos, expected, "record damaged")
                    if crc(view[pos + 8 : stop]) != stored:
                        raise corrupt_at(scan, pos, expected, "record checksum mismatch")
                    if rtype not in known:
                        raise corrupt_at(scan, pos, expected, f"record of unknown type {rtype}")
                    if lsn > last:
                        return
                    if lsn > after_lsn:
                        position = new(RecordPosition, (seq, pos))
                        yield new(Record, (lsn, rtype, flags, data[pos + head_size : stop], position, when))
                    pos = stop
                    expected += 1
            finally:
                view.release()
            following = scans[i + 1] if i + 1 < len(scans) else None
            if following is not None and following.header is not None and following.base_lsn != expected:
                raise corrupt_at(
                    following,
                    0,
                    following.base_lsn,
                    f"segment starts at LSN {following.base_lsn}, previous one ends before LSN {expected}",
                )


def corrupt_at(scan: SegmentScan, pos: int, lsn: int, why: str) -> CorruptRecord:
    """The error for damage found at `pos` of a segment after the inspection (where LSN `lsn` was due)."""
    return CorruptRecord(
        f"{scan.name} offset {pos} LSN {lsn}: {why} (see memento inspect)",
        segment=scan.name,
        offset=pos,
        lsn=lsn,
    )


@contextmanager
def mapped(path: os.PathLike[str] | str) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes without copying them (an empty file cannot be mapped)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                yield b""
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield data
    except OSError as exc:
        if exc.filename is None:  # a read error on the open file: name it
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
