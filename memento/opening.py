"""Opening a log directory: lock it, load the newest snapshot, scan and repair the segments, set up the tail.

Strategy: `Log.open` runs this once. Segments wholly covered by the snapshot are only header-checked
(unless `full_check`); the others are scanned through an mmap. memento.recovery classifies what the scans
found, memento.repair quarantines and truncates what may be repaired, and `start` hands the Log its
segments and its tail: the last segment reopened for appending when it is whole, unsealed and of the current
format version, else a new one (whose creation waits for the first flush when the disk is full). A last
segment of an older version is sealed first, in its own layout, so that every record appended from now on
has the current layout (and a time); it is then exactly a crash-mid-rollover state, which open handles.

Directory layout: LOCK, wal/*.wal, snapshots/ (LMDB, memento.snapshot), quarantine/ (damaged bytes).
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from memento.disk import DiskIO, disk_full
from memento.errors import RecoveryRefused, SyncFailed, UnsupportedVersion
from memento.lock import lock_directory
from memento.private import private_dir
from memento.record import ENGINE_TYPES, TYPE_SEAL, encode, frame_of
from memento.recovery import REFUSED, UNSUPPORTED, Verdict, classify, clock_warning
from memento.repair import apply_verdict
from memento.scan import SegmentScan, scan_segment
from memento.segment import (
    FORMAT_VERSION,
    HEADER_SIZE,
    MIN_SEGMENT_SIZE,
    SUFFIX,
    TMP_SUFFIX,
    create_segment,
    parse_name,
    segment_name,
    synced,
)
from memento.snapshot import STATUS_DAMAGED, STATUS_FALLBACK, STATUS_UNREADABLE, SnapshotStore
from memento.spare import SparePreparer
from memento.staging import _Segment

if TYPE_CHECKING:
    from memento.log import Log

WAL_DIR: Final = "wal"
SNAPSHOT_DIR: Final = "snapshots"
QUARANTINE_DIR: Final = "quarantine"
LOCK_FILE: Final = "LOCK"


def open_log(
    cls: type[Log],
    path: str | os.PathLike[str],
    *,
    segment_size: int,
    salvage: bool,
    registry: Iterable[int] | None,
    disk: DiskIO | None,
    full_check: bool,
    clock: Callable[[], int],
) -> Log:
    """`Log.open`'s work (see there)."""
    if segment_size < MIN_SEGMENT_SIZE:
        raise ValueError(f"segment_size must be at least {MIN_SEGMENT_SIZE}")
    root = Path(path)
    private_dir(root / WAL_DIR)
    for name in (SNAPSHOT_DIR, QUARANTINE_DIR):
        if os.path.lexists(root / name) and not (root / name).is_dir():
            # Found now rather than at the first snapshot or repair, which would fail every time.
            raise NotADirectoryError(
                errno.ENOTDIR, "not a directory (the log keeps one there)", str(root / name)
            )
    lock_fd = lock_directory(root / LOCK_FILE)
    store: SnapshotStore | None = None
    try:
        store = SnapshotStore(root / SNAPSHOT_DIR)
        snapshot = store.load_latest()
        known = frozenset(registry) | ENGINE_TYPES if registry is not None else None
        log = cls(
            root,
            segment_size=segment_size,
            registry=known,
            disk=disk or DiskIO(),
            lock_fd=lock_fd,
            store=store,
            snapshot=snapshot,
            clock=clock,
        )
        recover(log, salvage=salvage, full_check=full_check)
        return log
    except BaseException:
        if store is not None:
            store.close()
        os.close(lock_fd)
        raise


def recover(log: Log, *, salvage: bool, full_check: bool) -> None:
    """Scan the segments, refuse or repair what is damaged, and start the log on what is kept."""
    report = log.recovery_report
    SparePreparer.clear(log._spares.directory)
    report.snapshot_lsn = log.snapshot_lsn
    store = log.snapshots
    if store.status in (STATUS_DAMAGED, STATUS_UNREADABLE):
        if not salvage:
            raise RecoveryRefused(f"{store.path}: {store.fallback_reason}")
        report.warnings.append(f"salvage: ignoring snapshots: {store.fallback_reason}")
    elif store.status == STATUS_FALLBACK:
        report.warnings.append(
            f"newest snapshot damaged, using LSN {log.snapshot_lsn}: {store.fallback_reason}"
        )
    names = sorted(os.listdir(log.wal_dir))
    for name in names:
        if name.endswith(TMP_SUFFIX):
            os.unlink(os.path.join(log.wal_dir, name))
            report.dropped_tmp.append(name)
            report.warnings.append(f"dropped unfinished segment {name}")
    if report.dropped_tmp:
        log.disk.fsync_dir(log.wal_dir)
    segment_names = [n for n in names if n.endswith(SUFFIX) and parse_name(n) is not None]
    segment_names.sort(key=lambda n: parse_name(n) or (0, 0))
    for name in names:
        if name.endswith(SUFFIX) and parse_name(name) is None:
            report.warnings.append(f"ignored file with a segment suffix but no segment name: {name}")
    scans = scan_segments(log, segment_names, full_check)
    verdict = classify(scans, log.snapshot_lsn)
    report.findings.extend(verdict.findings)
    report.status = verdict.status
    if verdict.status in (REFUSED, UNSUPPORTED):
        if not salvage:
            text = "; ".join(f.message for f in verdict.findings if f.severity != "repairable")
            first = next(f for f in verdict.findings if f.severity in (REFUSED, UNSUPPORTED))
            error = UnsupportedVersion if verdict.status == UNSUPPORTED else RecoveryRefused
            raise error(
                f"{log.path}: recovery refused: {text} (salvage keeps what is valid)",
                segment=first.segment,
                offset=first.offset,
                lsn=first.lsn,
            )
        report.salvaged = True
    for finding in verdict.findings:
        report.warnings.append(finding.message)
    kept = apply_verdict(log.wal_dir, log.path / QUARANTINE_DIR, scans, verdict, log.disk, report)
    moved_back = clock_warning(kept, log.clock())
    if moved_back is not None:
        report.warnings.append(moved_back)
    start(log, kept, verdict)
    report.end_lsn = log._next_lsn - 1


def scan_segments(log: Log, names: list[str], full_check: bool) -> list[SegmentScan]:
    """Scan the segments `names` (in order): covered ones by their header only, unless `full_check`."""
    bases = [(parse_name(n) or (0, 0))[1] for n in names]
    scans: list[SegmentScan] = []
    for i, name in enumerate(names):
        path = os.path.join(log.wal_dir, name)
        next_base = bases[i + 1] if i + 1 < len(names) else None
        covered = next_base is not None and next_base <= log.snapshot_lsn + 1 and not full_check
        with open(path, "rb") as f:
            if covered or os.fstat(f.fileno()).st_size < HEADER_SIZE:
                scans.append(
                    scan_segment(
                        name, f.read(HEADER_SIZE if covered else -1), log.registry, headers_only=covered
                    )
                )
                continue
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                scans.append(scan_segment(name, data, log.registry))
    return scans


def start(log: Log, kept: list[SegmentScan], verdict: Verdict) -> None:
    """Give the log the segments recovery kept and its tail (reopened, or a new segment)."""
    for scan in kept:
        header = scan.header
        size = header.size if header is not None else scan.size
        path = os.path.join(log.wal_dir, scan.name)
        frame = frame_of(header.version if header is not None else FORMAT_VERSION)
        seg = _Segment(scan.seq, scan.base_lsn, max(size, scan.size), path, frame=frame)
        log._segments.append(seg)
        log._by_seq[seg.seq] = seg
    log._next_lsn = verdict.next_lsn
    log._durable_lsn = verdict.next_lsn - 1
    tail_scan = kept[-1] if kept else None
    if (
        tail_scan is not None
        and tail_scan.scanned
        and not tail_scan.sealed
        and tail_scan.last_lsn + 1 == log._next_lsn
    ):
        tail = log._segments[-1]
        if tail_scan.header is not None and tail_scan.header.version < FORMAT_VERSION:
            seal_old_tail(log, tail, tail_scan.data_end)
        else:
            tail.fd = os.open(tail.path, os.O_RDWR | os.O_CLOEXEC)
            log._set_tail(tail, tail_scan.data_end)
            return
    # No segment, a sealed last one (crash mid-rollover, or of an older format version), or salvage moved
    # past the log's end.
    seq = kept[-1].seq + 1 if kept else 1
    path = os.path.join(log.wal_dir, segment_name(seq, log._next_lsn))
    seg = _Segment(seq, log._next_lsn, log.segment_size, path)
    try:
        seg.fd, _path = create_segment(log.wal_dir, seq, log._next_lsn, log.segment_size, log.disk)
    except OSError as exc:
        if not disk_full(exc) or isinstance(exc, SyncFailed):
            raise
        # A full disk (typically the crash that follows one) must not keep the log from opening:
        # everything recovered is readable, and the creation becomes the first flush's work, which
        # the AsyncWriter retries until space returns (suspended meanwhile, as for any rollover).
        log.recovery_report.warnings.append(
            f"no room for the next segment {seg.name} ({exc.strerror or exc}): writing waits for "
            f"{log.segment_size} bytes free in {log.wal_dir}"
        )
        log._no_room = exc
    log._segments.append(seg)
    log._by_seq[seq] = seg
    log._set_tail(seg, HEADER_SIZE)
    if seg.fd < 0:
        log._new_chunk(True)


def seal_old_tail(log: Log, tail: _Segment, data_end: int) -> None:
    """Write the seal of the last segment, which an older format version wrote, in that version's layout
    (the writer of that version kept room for it), and make it durable: appends then go to a new segment
    of the current version, created as after a crash mid-rollover."""
    seal = encode(TYPE_SEAL, 0, log._next_lsn, b"", log.clock(), timed=tail.frame.timed)
    fd = os.open(tail.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        log.disk.pwrite(fd, seal, data_end)
        synced(log.disk.fdatasync, fd)
    finally:
        os.close(fd)
