"""What keeps each segment on disk: "why is the log not shrinking?" for `memento replay`.

Strategy: space reclamation (memento.reclaim) deletes a sealed segment once the oldest snapshot kept
covers all its records and none of them is live, oldest segments first only; it copies the live records
of a sparse covered segment forward (compaction), and deletes the original once a snapshot covers the
copies. Which records are live is the application's knowledge: after a replay, its decoder names the
holders (`Holder`: e.g. "queue 'orders'", with how many live records it keeps in which segment) and
this module applies the same rules to say, per segment, "reclaimable now", "held by ...", "held by the
snapshot" (records the oldest kept snapshot does not cover yet), or "waits for an older segment".
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from memento.inspect import Inspection
from memento.record import Record, original
from memento.segment import HEADER_SIZE

# Reasons, as words (the JSON's "status").
ACTIVE: Final = "active"
HELD: Final = "held"
SNAPSHOT: Final = "held by the snapshot"
COPIED: Final = "copied forward"
WAITS: Final = "waits for an older segment"
RECLAIMABLE: Final = "reclaimable now"
SPARSE: Final = 0.5  # the store's compaction threshold (memento.reclaim's default)

# Read the record at (segment seq, offset): what a decoder may use to date its holders' oldest records.
ReadRecord = Callable[[int, int], Record | None]


@dataclass(frozen=True, slots=True)
class Holder:
    """The live records one holder keeps in one segment (the application names the holder)."""

    name: str
    segment: int
    records: int
    bytes: int
    oldest_lsn: int
    oldest_time: int = 0  # wall-clock µs of the oldest record; 0 unknown

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "holder": self.name,
            "segment": self.segment,
            "records": self.records,
            "bytes": self.bytes,
            "oldest_lsn": self.oldest_lsn,
            "oldest_time_us": self.oldest_time or None,
        }


@runtime_checkable
class HoldsSegments(Protocol):
    """A decoder that can say, after a replay to the end, which of its items keep which segments."""

    def holders(self, read: ReadRecord) -> list[Holder]:
        """Live records by holder and segment (`read` reads one record, e.g. to date the oldest)."""
        ...


@dataclass(slots=True)
class SegmentPin:
    """One segment and what keeps it."""

    name: str
    seq: int
    first_lsn: int
    last_lsn: int
    size: int
    status: str
    reason: str
    holders: list[Holder] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "file": self.name,
            "seq": self.seq,
            "first_lsn": self.first_lsn,
            "last_lsn": self.last_lsn,
            "size": self.size,
            "status": self.status,
            "reason": self.reason,
            "holders": [h.as_json() for h in self.holders],
        }


@dataclass(slots=True)
class HolderTotal:
    """One holder over all segments: what it keeps, and its oldest record."""

    name: str
    records: int = 0
    bytes: int = 0
    segments: int = 0
    oldest_lsn: int = 0
    oldest_time: int = 0

    def as_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "holder": self.name,
            "records": self.records,
            "bytes": self.bytes,
            "segments": self.segments,
            "oldest_lsn": self.oldest_lsn or None,
            "oldest_time_us": self.oldest_time or None,
        }


def totals(holders: Iterable[Holder]) -> list[HolderTotal]:
    """Each holder's records and bytes over all segments, most bytes first."""
    found: dict[str, HolderTotal] = {}
    for holder in holders:
        total = found.setdefault(holder.name, HolderTotal(holder.name))
        total.records += holder.records
        total.bytes += holder.bytes
        total.segments += 1
        if not total.oldest_lsn or holder.oldest_lsn < total.oldest_lsn:
            total.oldest_lsn = holder.oldest_lsn
            total.oldest_time = holder.oldest_time
    return sorted(found.values(), key=lambda t: (-t.bytes, t.name))


def _records(count: int) -> str:
    return f"{count} {'record' if count == 1 else 'records'}"


def _held_by(holders: list[Holder]) -> str:
    parts = [
        f"{h.name} ({_records(h.records)}, oldest LSN {h.oldest_lsn})"
        for h in sorted(holders, key=lambda h: -h.records)
    ]
    return "held by " + ", ".join(parts)


def segment_pins(
    inspection: Inspection, holders: Iterable[Holder], copied: dict[int, int] | None = None
) -> list[SegmentPin]:
    """What keeps each segment, by the rules of memento.reclaim. `copied` maps a segment's seq to the
    last LSN of the compaction copies made of its records (found on replay)."""
    by_segment: dict[int, list[Holder]] = {}
    for holder in holders:
        by_segment.setdefault(holder.segment, []).append(holder)
    copied = copied or {}
    # The store reclaims up to the OLDEST snapshot it keeps, so that either can still be recovered from.
    covered = inspection.snapshots[0].lsn if inspection.snapshots else 0
    segments = [s for s in inspection.segments if s.header_problem is None]
    pins: list[SegmentPin] = []
    prefix = True  # every older segment is reclaimable
    for i, seg in enumerate(segments):
        last = segments[i + 1].base_lsn - 1 if i + 1 < len(segments) else (seg.last_lsn or seg.base_lsn - 1)
        held = by_segment.get(seg.seq, [])
        live_bytes = sum(h.bytes for h in held)
        data_bytes = max(1, seg.data_end - HEADER_SIZE)
        if i + 1 == len(segments) or not seg.sealed:
            status, reason = ACTIVE, "the log is appended here"
            if held:
                reason += "; " + _held_by(held)
        elif held:
            status, reason = HELD, _held_by(held)
            if last <= covered and live_bytes <= SPARSE * data_bytes and seg.seq not in copied:
                reason += (
                    f"; sparse (about {live_bytes * 100 // data_bytes}% live): the next reclaim copies "
                    "them forward, and a later one deletes it"
                )
        elif last > covered:
            status = SNAPSHOT
            reason = (
                f"records up to LSN {last} are newer than the oldest snapshot kept (LSN {covered}); "
                "deleted once a newer snapshot is the oldest kept"
                if covered
                else "no snapshot yet: every record is needed to rebuild the state"
            )
        elif copied.get(seg.seq, 0) > covered:
            status = COPIED
            reason = (
                f"its live records were copied forward (up to LSN {copied[seg.seq]}); deleted once the "
                "oldest snapshot kept covers the copies"
            )
        elif prefix:
            status, reason = RECLAIMABLE, "no live record, covered by the snapshots"
        else:
            status, reason = WAITS, "no live record, but only the oldest segments are deleted"
        prefix = prefix and status == RECLAIMABLE
        pins.append(SegmentPin(seg.name, seg.seq, seg.base_lsn, last, seg.size, status, reason, held))
    return pins


def render_pins(pins: list[SegmentPin], holder_totals: list[HolderTotal]) -> list[str]:
    """Text lines: holders by bytes, then each segment and what keeps it."""
    lines = ["holders (most bytes first):"]
    if not holder_totals:
        lines.append("  none: no live record")
    for t in holder_totals:
        lines.append(
            f"  {t.name}: {_records(t.records)}, {t.bytes} bytes in {t.segments} "
            f"{'segment' if t.segments == 1 else 'segments'}, oldest LSN {t.oldest_lsn}"
            + (f" ({_time(t.oldest_time)})" if t.oldest_time else "")
        )
    reclaimable = sum(p.size for p in pins if p.status == RECLAIMABLE)
    lines.append(f"segments ({len(pins)}, {reclaimable} bytes reclaimable now):")
    for p in pins:
        lines.append(f"  {p.name}  LSN {p.first_lsn}..{p.last_lsn}  {p.size} bytes  {p.status}: {p.reason}")
    return lines


def _time(micros: int) -> str:
    moment = datetime.datetime.fromtimestamp(micros / 1e6, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class CopyTracker:
    """Notes, while records are replayed, the compaction copies (FLAG_RELOCATED | FLAG_ORIGIN) made of
    each segment's records: `through` maps an original segment's seq to the last copy's LSN."""

    def __init__(self, inspection: Inspection) -> None:
        self._bases = [(s.base_lsn, s.seq) for s in inspection.segments if s.header_problem is None]
        self.through: dict[int, int] = {}

    def note(self, record: Record) -> None:
        """A relocated record was replayed."""
        origin, _payload = original(record)
        if not origin:
            return
        seq = None
        for base, candidate in self._bases:
            if base > origin:
                break
            seq = candidate
        if seq is not None and record.lsn > self.through.get(seq, 0):
            self.through[seq] = record.lsn
