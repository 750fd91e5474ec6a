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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from memento.disk import DiskIO, disk_full
from memento.errors import LogFailed, RecoveryRefused, SyncFailed, UnsupportedVersion
from memento.identity import (
    Mark,
    MarkFile,
    drop_leftovers,
    new_log_id,
    read_identity,
    read_mark,
    write_identity,
)
from memento.lock import lock_directory
from memento.private import private_dir
from memento.record import ENGINE_TYPES, TYPE_SEAL, encode, frame_of
from memento.recovery import (
    CLEAN,
    REFUSED,
    REPAIRABLE,
    UNSUPPORTED,
    BadRecord,
    Finding,
    Identity,
    Verdict,
    classify,
    clock_warning,
    resolve_identity,
)
from memento.repair import apply_verdict
from memento.salvage import load_accepted, make_plan, save_accepted, tail_end
from memento.scan import SegmentScan, scan_segment, zeros_from
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
    log_id: bytes | None = None,
    dry_run: bool = False,
    bad_record: BadRecord | None = None,
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
        try:
            recover(
                log,
                salvage=salvage,
                full_check=full_check,
                new_id=log_id,
                dry_run=dry_run,
                bad_record=bad_record,
            )
        except BaseException:
            if log._mark is not None:
                log._mark.close()
            raise
        return log
    except BaseException:
        if store is not None:
            store.close()
        os.close(lock_fd)
        raise


def recover(
    log: Log,
    *,
    salvage: bool,
    full_check: bool,
    new_id: bytes | None = None,
    dry_run: bool = False,
    bad_record: BadRecord | None = None,
) -> None:
    """Scan the segments, refuse or repair what is damaged, and start the log on what is kept.

    `new_id` is the id a log created now gets (default: random); an existing log keeps its own. With
    salvage every segment is scanned (`full_check`), so that damage the snapshot covers is found now
    rather than by a reader. `dry_run` (with salvage) decides everything but changes nothing: the log is
    then read-only (`start_dry_run`)."""
    report = log.recovery_report
    if not dry_run:
        SparePreparer.clear(log._spares.directory)
        for name in drop_leftovers(log.path):
            report.dropped_tmp.append(name)
            report.warnings.append(f"dropped unfinished {name}")
    identity_raw = read_identity(log.path)
    mark_raw = read_mark(log.path)
    report.snapshot_lsn = log.snapshot_lsn
    store = log.snapshots
    broken = store.status in (STATUS_DAMAGED, STATUS_UNREADABLE)
    if store.status == STATUS_FALLBACK:
        report.warnings.append(
            f"newest snapshot damaged, using LSN {log.snapshot_lsn}: {store.fallback_reason}"
        )
    names = sorted(os.listdir(log.wal_dir))
    for name in names:
        if name.endswith(TMP_SUFFIX) and not dry_run:
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
    scans = scan_segments(log, segment_names, full_check or salvage)
    identity = resolve_identity(str(log.path), identity_raw, mark_raw, scans, store.recorded_id())
    if identity.store_foreign and salvage:
        # Another log's snapshots say nothing about this one: replay the whole log instead.
        report.warnings.append("salvage: ignoring snapshots of another log")
        log.snapshot = None
        log.snapshot_lsn = report.snapshot_lsn = 0
    end = tail_end(log.wal_dir, scans[-1]) if salvage and scans else None
    verdict = classify(
        scans,
        log.snapshot_lsn,
        identity,
        accepted=load_accepted(log.path),
        bad_record=bad_record,
        tail_end=end,
    )
    if broken:
        broken_store(log, scans, verdict, salvage=salvage, dry_run=dry_run)
    report.findings.extend(verdict.findings)
    report.clean_stop_lsn = identity.mark.clean_lsn if identity.mark is not None else None
    report.status = verdict.status
    if verdict.status in (REFUSED, UNSUPPORTED):
        if not salvage:
            text = "; ".join(f.message for f in verdict.findings if f.severity in (REFUSED, UNSUPPORTED))
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
    report.plan = make_plan(scans, verdict, log.snapshot_lsn, log.wal_dir if salvage else None)
    if broken:
        report.plan.store_problem = store.fallback_reason or "unreadable"
    report.damaged = dict(verdict.damaged)
    if dry_run:
        log.log_id = identity.log_id or new_id or new_log_id()
        start_dry_run(log, scans, verdict)
        report.end_lsn = verdict.end_lsn
        return
    settle_identity(log, identity, mark_raw, scans, verdict, new_id)
    kept = apply_verdict(log.wal_dir, log.path / QUARANTINE_DIR, scans, verdict, log.disk, report)
    if report.salvaged:
        accept_covered(log, kept, verdict)
    moved_back = clock_warning(kept, log.clock())
    if moved_back is not None:
        report.warnings.append(moved_back)
    start(log, kept, verdict)
    report.end_lsn = log._next_lsn - 1
    assert log._mark is not None
    # The log is open: no clean stop until close says so, and MARK names the tail (FORMAT.md).
    log._mark.write(log.log_id, *log._newest, None)


def settle_identity(
    log: Log,
    identity: Identity,
    mark_raw: Mark | str | None,
    scans: list[SegmentScan],
    verdict: Verdict,
    new_id: bytes | None,
) -> None:
    """Give the log its id and its MARK file before anything is cut or created.

    A fresh (or pre-version-3) log gets its id here: MARK first, IDENTITY last, so a crash in between
    leaves a MARK whose id the next open adopts. Salvage lowers MARK's newest segment to the last one
    kept before the cut quarantines the rest, so a crash during the cut is not refused again for the
    segments salvage was dropping anyway."""
    log.log_id = identity.log_id or new_id or new_log_id()
    current = mark_raw if isinstance(mark_raw, Mark) and mark_raw.log_id == log.log_id else None
    log._mark = MarkFile(log.path, current)
    cut = verdict.cut
    keep = len(scans) if cut is None else cut.index + (0 if cut.offset is None else 1)
    kept = scans[keep - 1] if keep > 0 else None
    log._newest = (kept.seq, kept.base_lsn) if kept is not None else (0, 0)
    if current is None or log.recovery_report.salvaged or identity.findings:
        log._mark.write(log.log_id, *log._newest, None)
    if not isinstance(read_identity(log.path), bytes):
        write_identity(log.path, log.log_id)
    log.snapshots.log_id = log.log_id


def broken_store(
    log: Log, scans: list[SegmentScan], verdict: Verdict, *, salvage: bool, dry_run: bool
) -> None:
    """The snapshot store cannot be read (its file fails the check, LMDB refuses it, or no snapshot in it
    verifies). When the log still holds every record from LSN 1 nothing is lost: replay all of it, with a
    warning, as for a missing store. Otherwise refuse, unless salvage starts from what is there. Either
    way the broken store is moved to quarantine/ and a new one made, so that snapshots are written again
    (and the log can shrink)."""
    store = log.snapshots
    reason = store.fallback_reason
    intact = (not scans or scans[0].base_lsn == 1) and verdict.status in (CLEAN, REPAIRABLE)
    if intact:
        log.recovery_report.warnings.append(
            f"snapshot store unusable, replaying the whole log (it holds every record from LSN 1): {reason}"
        )
    elif not salvage:
        if scans and scans[0].base_lsn != 1:
            why = f"the log starts at LSN {scans[0].base_lsn}"
        else:
            why = "; ".join(f.message for f in verdict.findings if f.severity in (REFUSED, UNSUPPORTED))
            why = f"the log is damaged too: {why}"
        raise RecoveryRefused(
            f"{store.path}: {reason}; the log does not hold every record from LSN 1 ({why}), so the state "
            "cannot be rebuilt without the snapshots"
        )
    else:
        log.recovery_report.warnings.append(f"salvage: ignoring snapshots: {reason}")
    if dry_run:
        return
    store.close()
    quarantine = log.path / QUARANTINE_DIR
    private_dir(quarantine)
    target = quarantine / f"{SNAPSHOT_DIR}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    os.rename(store.path, target)
    log.disk.fsync_dir(str(quarantine))
    log.disk.fsync_dir(str(log.path))
    log.recovery_report.quarantined.append(str(target))
    log.recovery_report.snapshots_replaced = True
    log.recovery_report.warnings.append(f"moved the unusable snapshot store to {target}; a new one is made")
    log.snapshots = SnapshotStore(store.path)


def accept_covered(log: Log, kept: list[SegmentScan], verdict: Verdict) -> None:
    """Remember the covered damage this salvage kept in place, so that later starts accept it. When the
    log continues after the snapshot, past its own end, the last segment kept is followed by one that
    starts at S+1: a full scan would find that gap too (the kept one unsealed, or sealed for an LSN below
    S+1), so it is accepted with the rest."""
    covered = [f for f in verdict.findings if f.covered and f.severity == REFUSED]
    last = kept[-1] if kept else None
    if last is not None and last.scanned and verdict.next_lsn > last.next_lsn:
        if last.sealed:
            name = segment_name(last.seq + 1, verdict.next_lsn)
            message = (
                f"segment starts at LSN {verdict.next_lsn}, previous one ends before LSN {last.next_lsn}"
            )
            covered.append(
                Finding("lsn-gap", REFUSED, name, 0, verdict.next_lsn, f"{name}: {message}", covered=True)
            )
        else:
            where = f"{last.name} offset {last.data_end} LSN {last.last_lsn + 1}"
            message = f"{where}: sealed segment ends without its seal record"
            covered.append(
                Finding(
                    "unsealed", REFUSED, last.name, last.data_end, last.last_lsn + 1, message, covered=True
                )
            )
    if covered:
        save_accepted(log.path, covered, log.disk)


def start_dry_run(log: Log, scans: list[SegmentScan], verdict: Verdict) -> None:
    """Give the log the segments salvage would keep, read-only: nothing was changed on disk, replay stops
    at the cut (`_read_limits`) and appends fail."""
    cut = verdict.cut
    keep = len(scans) if cut is None else cut.index + (0 if cut.offset is None else 1)
    for scan in scans[:keep]:
        size = scan.header.size if scan.header is not None else scan.size
        seg = _Segment(scan.seq, scan.base_lsn, max(size, scan.size), os.path.join(log.wal_dir, scan.name))
        log._segments.append(seg)
        log._by_seq[seg.seq] = seg
    if cut is not None and cut.offset is not None:
        log._read_limits[scans[cut.index].seq] = cut.offset
    elif keep and scans[keep - 1].seq in verdict.damaged:
        # Damage the snapshot covers in the last segment: the real start appends to a new segment, so
        # replay (after the snapshot) reads nothing from this one.
        log._read_limits[scans[keep - 1].seq] = verdict.damaged[scans[keep - 1].seq]
    log._next_lsn = verdict.next_lsn
    log._durable_lsn = verdict.next_lsn - 1
    log._error = LogFailed("dry run: the log is read-only")


def scan_segments(log: Log, names: list[str], full_check: bool) -> list[SegmentScan]:
    """Scan the segments `names` (in order): covered ones by their header only, unless `full_check`."""
    bases = [(parse_name(n) or (0, 0))[1] for n in names]
    scans: list[SegmentScan] = []
    for i, name in enumerate(names):
        path = os.path.join(log.wal_dir, name)
        next_base = bases[i + 1] if i + 1 < len(names) else None
        covered = next_base is not None and next_base <= log.snapshot_lsn + 1 and not full_check
        try:
            scans.append(_scan_file(log, name, path, covered))
        except OSError as exc:
            if exc.filename is None:  # a read error on the open file: name it
                raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
            raise
    return scans


def _scan_file(log: Log, name: str, path: str, covered: bool) -> SegmentScan:
    with open(path, "rb") as f:
        if covered or os.fstat(f.fileno()).st_size < HEADER_SIZE:
            return scan_segment(
                name, f.read(HEADER_SIZE if covered else -1), log.registry, headers_only=covered
            )
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return scan_segment(name, data, log.registry, zeros=zeros_from(f.fileno(), len(data)))


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
            log._newest = (tail.seq, tail.base_lsn)
            return
    # No segment, a sealed last one (crash mid-rollover, or of an older format version), or salvage moved
    # past the log's end.
    seq = kept[-1].seq + 1 if kept else 1
    path = os.path.join(log.wal_dir, segment_name(seq, log._next_lsn))
    seg = _Segment(seq, log._next_lsn, log.segment_size, path)
    try:
        seg.fd, _path = create_segment(
            log.wal_dir, seq, log._next_lsn, log.segment_size, log.disk, log_id=log.log_id
        )
        log._newest = (seq, log._next_lsn)
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
