"""What salvage drops, said before it acts, and the damage it accepted, kept so that its start is permanent.

Strategy: `make_plan` is a pure function of the scans and the verdict: the records the cut drops (LSN
range, count, segment files), the segments kept in place although damaged (the snapshot covers them) and
where message bodies may be unreadable. Its `lines()` are what `ottermq serve --salvage [--dry-run]` prints,
each starting with "salvage plan:" so that an operator can grep them.

Salvage keeps damaged segments that the snapshot covers instead of cutting the log there; a later start
without salvage would find the same damage and refuse. So the covered findings salvage accepted are kept
in `<dir>/SALVAGED` (JSON, written with a temporary file, fsync and rename) and `classify` reports them as
ACCEPTED from then on: the salvaged start is permanent. New damage, even in the same segment, is a
different finding and is refused again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from memento.disk import DiskIO
from memento.errors import CorruptRecord
from memento.private import create_private
from memento.reader import decode_at
from memento.record import HEAD_SIZE, TYPE_SEAL, Record
from memento.recovery import ACCEPTED, REPAIRABLE, Finding, Verdict
from memento.scan import SegmentScan
from memento.segment import HEADER_SIZE, parse_name

ACCEPTED_FILE: Final = "SALVAGED"
PLAN_PREFIX: Final = "salvage plan:"


@dataclass(slots=True)
class SalvagePlan:
    """What salvage does to the log: the records it drops and the damage it keeps in place."""

    snapshot_lsn: int
    end_lsn: int  # last LSN kept
    next_lsn: int  # first LSN written after the salvage
    first_dropped: int = 0  # first LSN dropped (0: none)
    last_dropped: int = 0  # last LSN known to have been in the log (0: none dropped)
    cut_segment: str = ""  # segment cut at `cut_offset` ("" when no segment is cut inside)
    cut_offset: int = -1
    cut_at: tuple[int, int] | None = None  # (seq, offset): bodies at or past this position are gone
    resync: tuple[int, int] | None = None  # (offset, LSN) of the valid record found after the damage cut at
    dropped_segments: list[str] = field(default_factory=list)  # moved whole to quarantine
    dropped_seqs: list[int] = field(default_factory=list)
    kept_damaged: list[str] = field(default_factory=list)  # covered findings: segments kept in place
    damaged: dict[int, int] = field(default_factory=dict)  # Verdict.damaged
    findings: list[Finding] = field(default_factory=list)
    store_problem: str = ""  # why the snapshot store is unusable (it goes to quarantine/, a new one is made)

    @property
    def records_dropped(self) -> int:
        """How many LSNs the cut drops (LSNs are contiguous, so records)."""
        return self.last_dropped - self.first_dropped + 1 if self.first_dropped else 0

    @property
    def drops_anything(self) -> bool:
        """True when salvage removes records or keeps damage whose bodies may be lost."""
        return bool(self.first_dropped or self.damaged or self.dropped_segments)

    @property
    def needed(self) -> bool:
        """True when the log cannot be opened without salvage (or salvage changes anything)."""
        refused = any(f.severity not in (REPAIRABLE, ACCEPTED) for f in self.findings)
        return refused or self.drops_anything or bool(self.store_problem)

    def lines(self) -> list[str]:
        """The plan as greppable lines (each starts with PLAN_PREFIX)."""
        lines = [
            f"{PLAN_PREFIX} finding: {f.message}" for f in self.findings if f.severity not in (REPAIRABLE,)
        ]
        if self.first_dropped:
            where = []
            if self.cut_segment:
                where.append(f"{self.cut_segment} from offset {self.cut_offset}")
            where += self.dropped_segments
            lines.append(
                f"{PLAN_PREFIX} drop records LSN {self.first_dropped}..{self.last_dropped} "
                f"({self.records_dropped} records) in {', '.join(where) or '-'}; they go to quarantine/"
            )
        elif self.dropped_segments:
            lines.append(f"{PLAN_PREFIX} move to quarantine/: {', '.join(self.dropped_segments)}")
        else:
            lines.append(f"{PLAN_PREFIX} drop no records")
        for name in self.kept_damaged:
            lines.append(
                f"{PLAN_PREFIX} keep damaged segment {name} in place (the snapshot's queues point into "
                "it); messages whose bodies cannot be read there are dropped"
            )
        if self.store_problem:
            lines.append(
                f"{PLAN_PREFIX} move the unusable snapshot store to quarantine/ and make a new one: "
                f"{self.store_problem}"
            )
        if self.next_lsn != self.end_lsn + 1:
            lines.append(
                f"{PLAN_PREFIX} the log continues at LSN {self.next_lsn}, after the snapshot (LSN "
                f"{self.snapshot_lsn})"
            )
        return lines


def make_plan(
    scans: list[SegmentScan], verdict: Verdict, snapshot_lsn: int, wal_dir: str | None = None
) -> SalvagePlan:
    """The plan of applying `verdict` to the segments `scans` (in `wal_dir`: then the records still
    readable after a damaged one count among those dropped too)."""
    plan = SalvagePlan(snapshot_lsn, verdict.end_lsn, verdict.next_lsn, damaged=dict(verdict.damaged))
    plan.findings = list(verdict.findings)
    plan.kept_damaged = sorted(
        {f.segment for f in verdict.findings if f.covered and f.severity != ACCEPTED and f.segment}
    )
    cut = verdict.cut
    if cut is None:
        return plan
    keep = cut.index if cut.offset is None else cut.index + 1
    last = verdict.end_lsn
    if cut.offset is not None:
        scan = scans[cut.index]
        plan.cut_segment, plan.cut_offset = scan.name, cut.offset
        plan.cut_at = (scan.seq, cut.offset)
        if scan.resync is not None and scan.damage is not None and scan.damage.offset == cut.offset:
            plan.resync = (scan.resync.offset, scan.resync.lsn)
        last = max(last, _last_lsn(scan))
    for scan in scans[keep:]:
        plan.dropped_segments.append(scan.name)
        plan.dropped_seqs.append(scan.seq)
        last = max(last, _last_lsn(scan), scan.base_lsn - 1)
    if last > verdict.end_lsn:
        plan.first_dropped, plan.last_dropped = verdict.end_lsn + 1, last
    if wal_dir is not None and plan.first_dropped:
        for record in dropped_records(wal_dir, plan):
            plan.last_dropped = max(plan.last_dropped, record.lsn)
    return plan


def dropped_records(wal_dir: str, plan: SalvagePlan) -> Iterator[Record]:
    """The records `plan` drops that can still be read, in order: in the cut segment from the cut (or,
    past damage, from the valid record found after it), then in each dropped segment; a record that fails
    its checks ends its segment's run."""
    runs: list[tuple[str, int, int]] = []  # (segment, offset, expected LSN)
    if plan.cut_segment:
        offset, lsn = plan.resync or (plan.cut_offset, plan.first_dropped)
        runs.append((plan.cut_segment, offset, lsn))
    for name in plan.dropped_segments:
        parsed = parse_name(name)
        if parsed is not None:
            runs.append((name, HEADER_SIZE, parsed[1]))
    for name, offset, lsn in runs:
        parsed = parse_name(name)
        if parsed is None:
            continue
        try:
            with open(os.path.join(wal_dir, name), "rb") as f:
                data = f.read()
        except OSError:
            continue
        while offset + HEAD_SIZE <= len(data):
            try:
                record = decode_at(data, offset, parsed[0], name, offset)
            except CorruptRecord:
                break
            if record.lsn != lsn or record.type == TYPE_SEAL:
                break
            yield record
            offset += HEAD_SIZE + len(record.payload)
            lsn += 1


def _last_lsn(scan: SegmentScan) -> int:
    """The highest LSN a scan saw (a valid record after damage counts)."""
    seen = scan.last_lsn if scan.scanned else scan.base_lsn - 1
    if scan.resync is not None:
        seen = max(seen, scan.resync.lsn)
    if scan.sealed:
        seen = max(seen, scan.seal_lsn - 1)
    return seen


def load_accepted(root: Path) -> frozenset[tuple[str, str, int]]:
    """Keys of the findings an earlier salvage accepted (empty when none; an unreadable file is none)."""
    try:
        data = json.loads((root / ACCEPTED_FILE).read_text())
        return frozenset((str(e["segment"]), str(e["kind"]), int(e["offset"])) for e in data["accepted"])
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError, KeyError, TypeError):
        # Read again as empty: covered damage is then refused until salvaged again, never silently lost.
        return frozenset()


def save_accepted(root: Path, findings: Iterable[Finding], disk: DiskIO) -> None:
    """Add the covered `findings` to the accepted ones, durably (temporary file, fsync, rename)."""
    path = root / ACCEPTED_FILE
    try:
        entries = list(json.loads(path.read_text())["accepted"])
    except (OSError, ValueError, KeyError, TypeError):
        entries = []
    known = {(e.get("segment"), e.get("kind"), e.get("offset")) for e in entries if isinstance(e, dict)}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for f in findings:
        if f.key not in known:
            entries.append(
                {"segment": f.segment, "kind": f.kind, "offset": f.offset, "lsn": f.lsn, "at": stamp}
            )
            known.add(f.key)
    tmp = root / f"{ACCEPTED_FILE}.tmp"
    fd = create_private(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        disk.pwrite(fd, json.dumps({"accepted": entries}, indent=1).encode() + b"\n", 0)
        disk.fdatasync(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    os.rename(tmp, path)
    disk.fsync_dir(str(root))


def tail_end(wal_dir: str, scan: SegmentScan) -> int | None:
    """The last LSN of the run of valid records after the damage in segment `scan` (from its resync
    point), or None when it has no damage followed by a valid record."""
    if scan.damage is None or scan.resync is None:
        return None
    plan = SalvagePlan(0, 0, 0, cut_segment=scan.name, resync=(scan.resync.offset, scan.resync.lsn))
    last = None
    for record in dropped_records(wal_dir, plan):
        last = record.lsn
    return last
