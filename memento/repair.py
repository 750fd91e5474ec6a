"""Applying a recovery verdict to the directory: quarantine damaged bytes, cut the log, move dropped
segments aside.

Strategy: nothing is ever deleted by recovery. The damaged bytes (from the cut to the last non-zero byte)
are copied to quarantine/ and made durable first; only then is the segment truncated at the cut and
preallocated again with zeros. Segments dropped whole (salvage) are renamed into quarantine/.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path

from memento.disk import DiskIO
from memento.private import create_private, private_dir
from memento.recovery import RecoveryReport, Verdict
from memento.scan import SegmentScan


def apply_verdict(
    wal_dir: str,
    quarantine: Path,
    scans: list[SegmentScan],
    verdict: Verdict,
    disk: DiskIO,
    report: RecoveryReport,
) -> list[SegmentScan]:
    """Carry out `verdict.cut` (if any); returns the scans of the segments kept, as they now stand."""
    cut = verdict.cut
    if cut is None:
        return scans
    private_dir(quarantine)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    keep = cut.index if cut.offset is None else cut.index + 1
    if cut.offset is not None:
        scan = scans[cut.index]
        fd = os.open(os.path.join(wal_dir, scan.name), os.O_RDWR | os.O_CLOEXEC)
        try:
            damaged = os.pread(fd, max(scan.dirty_end, cut.offset) - cut.offset, cut.offset)
            target = quarantine / f"{scan.name}.{cut.offset}.{stamp}.bin"
            _write_durably(target, damaged, disk)
            disk.fsync_dir(str(quarantine))
            report.quarantined.append(str(target))
            os.ftruncate(fd, cut.offset)
            disk.preallocate(fd, max(scan.size, scan.header.size if scan.header is not None else 0))
            disk.fdatasync(fd)
        finally:
            os.close(fd)
    for scan in scans[keep:]:
        target = quarantine / f"{scan.name}.{stamp}"
        os.rename(os.path.join(wal_dir, scan.name), target)
        report.quarantined.append(str(target))
    disk.fsync_dir(str(quarantine))
    disk.fsync_dir(wal_dir)
    kept = list(scans[:keep])
    if cut.offset is not None:
        tail = kept[-1]
        kept[-1] = replace(
            tail,
            count=max(0, verdict.end_lsn - tail.base_lsn + 1),
            last_lsn=verdict.end_lsn,
            data_end=cut.offset,
            sealed=False,
            seal_lsn=-1,
            damage=None,
            resync=None,
            unknown_type=None,
            dirty_end=cut.offset,
        )
    return kept


def _write_durably(path: Path, data: bytes, disk: DiskIO) -> None:
    fd = create_private(path, os.O_WRONLY | os.O_TRUNC)
    try:
        disk.pwrite(fd, data, 0)
        disk.fdatasync(fd)
    except OSError as exc:
        # Named, so that the operator knows where the room is needed (a full disk refuses the repair).
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise OSError(
            exc.errno, f"{exc.strerror or exc} (quarantining {len(data)} damaged bytes)", str(path)
        ) from exc
    finally:
        os.close(fd)
