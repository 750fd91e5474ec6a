"""`memento trace`: find the few records that mention something, fast, without knowing what they mean.

Strategy: the application knows which bytes identify what it looks for (a message id as it is encoded in a
payload, the packed id its removal records list) and hands them over as needles; Memento does the reading.
Each segment is searched whole with `bytes.find` (C speed, about 1.5 GB/s a needle), each needle once
over the file (where it occurs next is kept until the walk passes it), and a segment holding none of the
needles is never walked. Where a needle occurs, record headers are walked up to the record that holds it;
that record is yielded (crc checked) only when one needle lies wholly inside its
payload and its type is one the caller asked for. The caller decodes and verifies what it gets: a needle
found by chance inside another record's body is a false positive it drops. The needle list may grow while
the scan runs (what a found record reveals, e.g. the id its later removal will name): later records are
searched for the new needles too. Records are read up to where recovery would keep the log, as
`iter_records` reads them.

The meaning of the records (what is a publish, which id a removal lists) is the tracer's: an application
offers one through its replay decoder (`memento.inspect_decoders`), as a `trace` method (`Tracer`).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator, Sequence, Set
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import crc32c

from memento.errors import CorruptRecord
from memento.inspect import WAL_DIR, Inspection, corrupt_at, inspect_log, mapped
from memento.inspect_decoders import ENTRY_POINT_GROUP, DecoderError, names, resolve
from memento.record import TYPE_SEAL, Record, RecordPosition
from memento.scan import SegmentScan
from memento.segment import HEADER_SIZE

# One line of a trace: its human text and the same as a JSON-able document.
TraceLine = tuple[str, dict[str, Any]]

# The first 20 bytes of a record header in every format version: len, crc, type, flags, reserved, lsn.
# Format version 3 adds a u64 wall-clock time after them (FORMAT.md); this module reads records through
# these two, so that it reads every version's segments without caring which one wrote them.
_PREFIX = struct.Struct("<IIBBHQ")
_TIME = struct.Struct("<Q")
_TIMED_VERSION = 3


def _head_size(scan: SegmentScan) -> int:
    """Bytes before the payload in the records of this segment."""
    timed = scan.header is not None and scan.header.version >= _TIMED_VERSION
    return _PREFIX.size + (_TIME.size if timed else 0)


def _record_at(data: bytes | mmap.mmap, pos: int, head: int, scan: SegmentScan) -> Record:
    """The record at `pos` of this segment's bytes, its crc checked (CorruptRecord if it fails)."""
    length, stored, rtype, flags, _res, lsn = _PREFIX.unpack_from(data, pos)
    stop = pos + 8 + length
    if length < head - 8 or stop > len(data) or crc32c.crc32c(data[pos + 8 : stop]) != stored:
        raise corrupt_at(scan, pos, lsn, "no valid record there")
    when = _TIME.unpack_from(data, pos + _PREFIX.size)[0] if head > _PREFIX.size else 0
    return Record(lsn, rtype, flags, data[pos + head : stop], RecordPosition(scan.seq, pos), when)


@runtime_checkable
class Tracer(Protocol):
    """What a decoder offers to `memento trace`: the history of one item, as lines in log order."""

    def trace(self, inspection: Inspection, key: str | None, lsn: int | None) -> list[TraceLine]:
        """Every record that touched the item named by `key` (the application's own id) or logged at `lsn`."""
        ...


def _holds(data: bytes | mmap.mmap, needles: Sequence[bytes], start: int, end: int) -> bool:
    """Whether one of `needles` lies wholly inside data[start:end]."""
    return any(data.find(needle, start, end) >= 0 for needle in needles)


def quick_inspection(path: str | os.PathLike[str]) -> Inspection:
    """What `trace` needs of `inspect_log`, at a fraction of its cost on a large log: every check but the
    scan of the segments before the last (`inspect_log(quick=True)`). Those are checked as far as
    `records_containing` walks them; `memento verify` checks every record."""
    return inspect_log(path, by_type=False, quick=True)


def records_containing(
    inspection: Inspection,
    needles: list[bytes],
    types: Set[int],
    after_lsn: int = 0,
    to_lsn: int | None = None,
) -> Iterator[Record]:
    """Records with after_lsn < LSN <= to_lsn (default: where recovery keeps the log), of one of `types`,
    whose payload holds one of `needles` (which the caller may extend between records), in LSN order.

    A segment the inspection only header-checked (`quick_inspection`) is checked as far as it is walked:
    lengths and LSNs of the headers passed, the crc of the records yielded; damage raises CorruptRecord."""
    last = inspection.end_lsn if to_lsn is None else min(to_lsn, inspection.end_lsn)
    wal = inspection.path / WAL_DIR
    scans = inspection.scans
    unpack = _PREFIX.unpack_from
    for i, scan in enumerate(scans):
        if scan.header is None or scan.base_lsn > last:
            return
        if i + 1 < len(scans) and scans[i + 1].base_lsn <= after_lsn + 1:
            continue
        head = _head_size(scan)
        with mapped(wal / scan.name) as data:
            end = scan.data_end if scan.scanned else len(data)
            pos = HEADER_SIZE
            expected = scan.base_lsn
            ahead: dict[bytes, int] = {}  # needle -> where it occurs next (end: nowhere), valid from pos
            while pos + head <= end:
                hit = end
                for needle in needles:
                    at = ahead.get(needle, -1)
                    if at < pos:
                        at = data.find(needle, pos, end)
                        ahead[needle] = at = end if at < 0 else at
                    hit = min(hit, at)
                if hit >= end:
                    break
                # Walk the headers up to the record the hit lies in (maybe in its header: checked below).
                while True:
                    length, _crc, rtype, _flags, _res, lsn = unpack(data, pos)
                    stop = pos + 8 + length
                    if length == 0 or rtype == TYPE_SEAL:
                        stop = end  # the end of this segment's data: no record holds the hit
                        break
                    if length < head - 8 or stop > end or lsn != expected:
                        raise corrupt_at(scan, pos, expected, "record damaged")
                    if stop > hit or stop + head > end:
                        break
                    pos = stop
                    expected += 1
                if stop == end and (length == 0 or rtype == TYPE_SEAL):
                    break
                if lsn > last:
                    return
                if lsn > after_lsn and rtype in types and _holds(data, needles, pos + head, stop):
                    yield _record_at(data, pos, head, scan)
                pos = stop
                expected += 1
        if scan.damage is not None or scan.unknown_type is not None:
            return


def record_at(inspection: Inspection, lsn: int) -> Record | None:
    """The record logged at `lsn` (None when the log, as recovery would keep it, does not hold it)."""
    if lsn < 1 or lsn > inspection.end_lsn:
        return None
    scans = inspection.scans
    unpack = _PREFIX.unpack_from
    for i, scan in enumerate(scans):
        if scan.header is None or scan.base_lsn > lsn:
            return None
        if i + 1 < len(scans) and scans[i + 1].base_lsn <= lsn:
            continue
        head = _head_size(scan)
        with mapped(inspection.path / WAL_DIR / scan.name) as data:
            pos = HEADER_SIZE
            end = scan.data_end if scan.scanned else len(data)
            expected = scan.base_lsn
            while pos + head <= end:
                length, _crc, rtype, _flags, _res, found = unpack(data, pos)
                if length == 0 or rtype == TYPE_SEAL:
                    return None
                if length < head - 8 or pos + 8 + length > end or found != expected:
                    raise corrupt_at(scan, pos, expected, "record damaged")
                if found == lsn:
                    return _record_at(data, pos, head, scan)
                pos += 8 + length
                expected += 1
        return None
    return None


def read_record(inspection: Inspection, segment: int, offset: int) -> Record | None:
    """The record at `offset` of segment `segment` (by sequence number), crc checked; None when that
    segment is not in the log or no valid record starts there."""
    for scan in inspection.scans:
        if scan.seq != segment or scan.header is None:
            continue
        head = _head_size(scan)
        fd = os.open(inspection.path / WAL_DIR / scan.name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if not HEADER_SIZE <= offset <= size - head:
                return None
            length = _PREFIX.unpack_from(os.pread(fd, _PREFIX.size, offset))[0]
            data = os.pread(fd, 8 + length, offset) if offset + 8 + length <= size else b""
        finally:
            os.close(fd)
        try:
            return _record_at(data, 0, head, scan)._replace(position=RecordPosition(segment, offset))
        except (CorruptRecord, struct.error):
            return None
    return None


class TracerError(Exception):
    """No decoder that can trace, or the one named cannot."""


def find_tracer(spec: str | None) -> Tracer:
    """The tracer of decoder `spec` (a name or module:callable), or of the one installed decoder that
    offers a trace when `spec` is None."""
    if spec is not None:
        try:
            decoder = resolve(spec)()
        except DecoderError as exc:
            raise TracerError(str(exc)) from None
        if not isinstance(decoder, Tracer):
            raise TracerError(f"decoder {spec!r} cannot trace (it has no trace method)")
        return decoder
    # Installed applications first (entry points), then decoders registered in this process.
    installed = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    for name in [*installed, *(n for n in names() if n not in installed)]:
        try:
            decoder = resolve(name)()
        except Exception:  # an installed decoder that cannot even load is no candidate
            continue
        if isinstance(decoder, Tracer):
            return decoder
    raise TracerError(
        f"no installed decoder can trace (decoders: {', '.join(names())}); name one with --decoder"
    )
