"""Space reclamation: delete old segments nothing needs, and compact sparse ones by copying their live
records forward.

Strategy: a segment may go once the snapshot covers all its records (last LSN <= covered_lsn) and the
caller's `live(position)` says none of them is still needed (e.g. no message body it indexes lives there).
Only the oldest segments are deleted (a prefix), so the segment set stays contiguous. A sparse covered
segment (live bytes <= `sparse` of its bytes) has its live records appended again at the head of the log
(new LSNs, FLAG_RELOCATED set) and the caller gets old -> new positions to update its index; the segment
itself is deleted by a later call, once the caller no longer calls those records live and a snapshot taken
after the copies covers them (covered_lsn >= the last copy's LSN).

Crash safety (FORMAT.md, "Reclamation order"): copies are written and fdatasynced before any deletion;
a segment compacted in one call is never deleted in the same call. A crash anywhere leaves the original
and maybe its copy: duplicates, never loss.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from memento.log import Log, _Segment
from memento.reader import records_in
from memento.record import HEAD_SIZE, Record, RecordPosition


@dataclass(frozen=True, slots=True)
class ReclaimResult:
    """What a reclaim did: deleted segment files, old -> new positions of copied records, bytes freed."""

    deleted: tuple[str, ...]
    relocated: dict[RecordPosition, RecordPosition]
    freed_bytes: int


MAX_COPY_BYTES = 64 << 20  # copies planned per call at most: bounds memory and the call's duration


@dataclass(slots=True)
class ReclaimPlan:
    """Which covered segments to delete and which live records to copy forward (built by `consider`)."""

    covered_lsn: int
    sparse: float
    delete: list[_Segment] = field(default_factory=list)
    copy: list[tuple[_Segment, list[Record]]] = field(default_factory=list)
    copy_bytes: int = 0
    prefix: bool = True  # every segment considered so far is deleted


def check_covered(log: Log, covered_lsn: int) -> None:
    """Refuse a covered_lsn that no snapshot covers: deleting below it would lose records."""
    if covered_lsn > log.snapshot_lsn:
        raise ValueError(f"covered_lsn {covered_lsn} is beyond the newest snapshot (LSN {log.snapshot_lsn})")


def candidates(log: Log, covered_lsn: int) -> list[_Segment]:
    """Sealed segments wholly covered by `covered_lsn`, oldest first."""
    return [seg for seg, last in log._sealed_segments() if last <= covered_lsn]


def load(seg: _Segment) -> bytes:
    """A segment's bytes (file reads only: safe in a thread while the log appends)."""
    with open(seg.path, "rb") as f:
        return f.read()


def consider(log: Log, todo: ReclaimPlan, seg: _Segment, data: bytes,
             live: Callable[[RecordPosition], bool]) -> None:
    """Add one candidate (in order, oldest first) to the plan; calls `live` once per record."""
    total = 0
    live_bytes = 0
    keep: list[Record] = []
    for record in records_in(data, seg.seq, seg.base_lsn, seg.name):
        size = HEAD_SIZE + len(record.payload)
        total += size
        if live(record.position):
            keep.append(record)
            live_bytes += size
    copied_ok = log.relocated_through.get(seg.seq, 0) <= todo.covered_lsn
    if todo.prefix and not keep and copied_ok and (todo.delete or seg is log._segments[0]):
        todo.delete.append(seg)
        return
    todo.prefix = False
    if keep and live_bytes <= todo.sparse * total and seg.seq not in log.relocated_through \
            and todo.copy_bytes < MAX_COPY_BYTES:
        todo.copy.append((seg, keep))
        todo.copy_bytes += live_bytes


def copy_forward(log: Log, todo: ReclaimPlan) -> dict[RecordPosition, RecordPosition]:
    """Append the copies (staged only: the caller makes them durable before any deletion)."""
    moved: dict[RecordPosition, RecordPosition] = {}
    for seg, records in todo.copy:
        last = 0
        for record in records:
            last = log._relocate(record)
            moved[record.position] = log.last_position
        log.relocated_through[seg.seq] = last
    return moved


def delete(log: Log, todo: ReclaimPlan, sync_dir: bool = True) -> tuple[tuple[str, ...], int]:
    """Delete the planned segments and (unless told not to) sync the directory; (names, bytes freed)."""
    names = []
    freed = 0
    for seg in todo.delete:
        freed += os.path.getsize(seg.path)
        names.append(seg.name)
        log._drop_segment(seg)
        log.relocated_through.pop(seg.seq, None)
    if names and sync_dir:
        log.disk.fsync_dir(log.wal_dir)
    return tuple(names), freed


def reclaim(log: Log, covered_lsn: int, live: Callable[[RecordPosition], bool],
            sparse: float = 0.5) -> ReclaimResult:
    """Reclaim space synchronously: plan, copy live records of sparse segments, sync, delete.

    `covered_lsn` must be the LSN of the OLDEST snapshot kept (the store keeps a fallback), so that
    recovery from either snapshot still finds every record it needs.
    """
    check_covered(log, covered_lsn)
    todo = ReclaimPlan(covered_lsn, sparse)
    for seg in candidates(log, covered_lsn):
        consider(log, todo, seg, load(seg), live)
    moved = copy_forward(log, todo)
    if moved:
        log.sync()
    names, freed = delete(log, todo)
    return ReclaimResult(names, moved, freed)
