"""Read-only inspection of a log directory: what `memento inspect`, `verify` and `replay` see.

Strategy: `Log.open` repairs (it drops *.tmp files and truncates torn tails) and takes the directory lock,
so the tools never use it. They read files with plain `open(..., "rb")`, open the snapshot store read-only
without a lock, and reuse the engine's pure functions (`scan_segment`, `classify`) so that what a tool
reports is what recovery would do. Two differences, both stricter: every segment is scanned in full (as
`Log.open(full_check=True)` does), and without an explicit registry a record of an engine type this
version does not know (0xF0..0xFE) is reported as unsupported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from memento.record import ENGINE_TYPES, HEAD, HEAD_SIZE, TYPE_SEAL, USER_TYPES, Record, RecordPosition
from memento.recovery import CLEAN, REFUSED, REPAIRABLE, UNSUPPORTED, Finding, Verdict, classify
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
EXIT_CODES: Final = {CLEAN: 0, REPAIRABLE: 1, REFUSED: 2, UNSUPPORTED: 3}
EXIT_BAD_INPUT: Final = 4
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
    try:
        children = sorted(child for child in root.iterdir() if child.is_dir())
    except OSError as exc:
        raise NotALogDir(f"{root}: {exc.strerror or exc}") from None
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


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _count_types(data: bytes, end: int) -> dict[int, int]:
    """Records by type between the header and `end` (already validated by the scan); seals excluded."""
    counts: dict[int, int] = {}
    pos = HEADER_SIZE
    unpack = HEAD.unpack_from
    while pos + HEAD_SIZE <= end:
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
    if not scan.scanned:
        return report
    report.records = scan.count
    if scan.count:
        report.first_lsn = scan.base_lsn
        report.last_lsn = scan.last_lsn
    report.data_end = scan.data_end
    report.sealed = scan.sealed
    report.by_type = _count_types(data, scan.data_end) if by_type else {}
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


def inspect_log(
    path: str | os.PathLike[str],
    *,
    registry: Set[int] | None = None,
    verify_snapshots: bool = False,
    progress: Callable[[str], None] | None = None,
    by_type: bool = True,
) -> Inspection:
    """Inspect the log directory at `path` without modifying it.

    `registry` lists the record types in use (default: every caller type plus the engine's known ones).
    `verify_snapshots` also checks every chunk of every snapshot (not only the one recovery would use).
    `progress` is called with each segment's name before it is read. `by_type` False leaves the
    segments' counts by type empty (a record listing does not show them: one pass less over the log).
    """
    root = check_log_dir(path)
    known = frozenset(registry) | ENGINE_TYPES if registry is not None else DEFAULT_TYPES
    with SnapshotStore(root / SNAPSHOT_DIR, readonly=True) as store:
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
    for name in segment_names:
        if progress is not None:
            progress(name)
        data = _read(wal / name)
        scan = scan_segment(name, data, known)
        scans.append(scan)
        segments.append(_segment_report(scan, data, by_type))
    verdict = classify(scans, snapshot_lsn)
    findings.extend(verdict.findings)
    status = max((f.severity for f in findings), key=_RANK.__getitem__, default=CLEAN)
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
    in order, read-only. Stops at the first damage, as recovery's cut does."""
    last = inspection.end_lsn if to_lsn is None else min(to_lsn, inspection.end_lsn)
    wal = inspection.path / WAL_DIR
    scans = inspection.scans
    for i, scan in enumerate(scans):
        if scan.header is None or not scan.scanned or scan.base_lsn > last:
            break
        if i + 1 < len(scans) and scans[i + 1].base_lsn <= after_lsn + 1:
            continue
        if progress is not None:
            progress(scan.name)
        data = _read(wal / scan.name)
        pos = HEADER_SIZE
        end = scan.data_end
        seq = scan.seq
        unpack = HEAD.unpack_from
        while pos + HEAD_SIZE <= end:
            length, _crc, rtype, flags, _res, lsn = unpack(data, pos)
            stop = pos + 8 + length
            if lsn > last:
                return
            if rtype != TYPE_SEAL and lsn > after_lsn:
                yield Record(lsn, rtype, flags, data[pos + HEAD_SIZE : stop], RecordPosition(seq, pos))
            pos = stop
        if scan.damage is not None or scan.unknown_type is not None:
            return
