"""Classifying what a scan of the log directory found: clean, repairable (a torn tail), refused, or
written by an unsupported version.

Strategy: `classify` is a pure function of the segment scans and the snapshot LSN, so every kind of damage
is a unit test of plain values. It returns the findings and one cut: the point from which the log is
dropped, either to repair a torn tail or, with salvage, to keep what is valid up to the first damage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from memento.scan import SegmentScan
from memento.segment import FORMAT_VERSION, HEADER_SIZE

CLEAN: Final = "clean"
REPAIRABLE: Final = "repairable"
REFUSED: Final = "refused"
UNSUPPORTED: Final = "unsupported"
_RANK: Final = {CLEAN: 0, REPAIRABLE: 1, REFUSED: 2, UNSUPPORTED: 3}
# How far the newest record's time may lie ahead of the wall clock before open warns that the clock moved
# back (microseconds): more than clock adjustments by NTP, less than any TTL worth flagging.
CLOCK_SLACK_US: Final = 60_000_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing recovery noticed. `severity` is REPAIRABLE, REFUSED or UNSUPPORTED."""

    kind: str
    severity: str
    segment: str
    offset: int
    lsn: int
    message: str


@dataclass(frozen=True, slots=True)
class Cut:
    """Keep segments[:index] whole and segments[index] up to `offset`; drop everything after.
    `offset` None drops segments[index] too."""

    index: int
    offset: int | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of `classify`: the worst severity, what was found, and where to cut."""

    status: str
    findings: tuple[Finding, ...]
    cut: Cut | None
    end_lsn: int  # last LSN kept once the cut is applied
    next_lsn: int  # LSN of the next append once the cut is applied


@dataclass(slots=True)
class RecoveryReport:
    """What `Log.open` found and did: `log.recovery_report`."""

    status: str = CLEAN
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    dropped_tmp: list[str] = field(default_factory=list)
    salvaged: bool = False
    snapshot_lsn: int = 0
    end_lsn: int = 0

    @property
    def repaired(self) -> bool:
        """True when recovery changed anything on disk."""
        return bool(self.quarantined or self.dropped_tmp)


def classify(scans: Sequence[SegmentScan], snapshot_lsn: int) -> Verdict:
    """Classify the scans of all segments (sorted by sequence number) against the snapshot LSN."""
    findings: list[Finding] = []
    cut: Cut | None = None

    def add(
        kind: str, severity: str, scan: SegmentScan | None, offset: int, lsn: int, message: str, at: Cut
    ) -> None:
        nonlocal cut
        name = scan.name if scan is not None else ""
        where = f"{name} offset {offset} LSN {lsn}" if name else f"LSN {lsn}"
        findings.append(Finding(kind, severity, name, offset, lsn, f"{where}: {message}"))
        if cut is None:
            cut = at

    last = len(scans) - 1
    for i, scan in enumerate(scans):
        if cut is not None:
            break
        header = scan.header
        if header is None:
            add(
                "bad-header",
                REFUSED,
                scan,
                0,
                scan.base_lsn,
                f"segment header invalid: {scan.header_problem}",
                Cut(i, None),
            )
            break
        if header.version > FORMAT_VERSION:
            add(
                "unsupported-version",
                UNSUPPORTED,
                scan,
                0,
                scan.base_lsn,
                f"segment format version {header.version} is newer than {FORMAT_VERSION}",
                Cut(i, None),
            )
            break
        if header.seq != scan.seq or header.base_lsn != scan.base_lsn:
            add(
                "bad-header",
                REFUSED,
                scan,
                0,
                scan.base_lsn,
                f"header names segment {header.seq} base LSN {header.base_lsn}, not what the file name says",
                Cut(i, None),
            )
            break
        if i > 0:
            prev = scans[i - 1]
            if scan.seq != prev.seq + 1:
                add(
                    "missing-segment",
                    REFUSED,
                    scan,
                    0,
                    scan.base_lsn,
                    f"segments {prev.seq + 1}..{scan.seq - 1} are missing",
                    Cut(i, None),
                )
                break
            expected = prev.next_lsn if prev.scanned else None
            if expected is not None and scan.base_lsn != expected:
                add(
                    "lsn-gap",
                    REFUSED,
                    scan,
                    0,
                    scan.base_lsn,
                    f"segment starts at LSN {scan.base_lsn}, previous one ends before LSN {expected}",
                    Cut(i, None),
                )
                break
            if expected is None and scan.base_lsn <= prev.base_lsn:
                add(
                    "lsn-gap",
                    REFUSED,
                    scan,
                    0,
                    scan.base_lsn,
                    f"segment base LSN {scan.base_lsn} does not follow {prev.base_lsn}",
                    Cut(i, None),
                )
                break
        if not scan.scanned:
            continue
        damage = scan.damage
        if scan.unknown_type is not None and (damage is None or scan.unknown_type.offset < damage.offset):
            u = scan.unknown_type
            add("unknown-type", UNSUPPORTED, scan, u.offset, u.lsn, u.reason, Cut(i, u.offset))
            break
        if damage is not None:
            if scan.resync is not None:
                add(
                    "corrupt-record",
                    REFUSED,
                    scan,
                    damage.offset,
                    damage.lsn,
                    f"{damage.reason}, followed by a valid record (LSN {scan.resync.lsn} at offset "
                    f"{scan.resync.offset})",
                    Cut(i, damage.offset),
                )
            elif i != last:
                add(
                    "corrupt-sealed",
                    REFUSED,
                    scan,
                    damage.offset,
                    damage.lsn,
                    f"{damage.reason} in a sealed segment",
                    Cut(i, damage.offset),
                )
            else:
                add(
                    "torn-tail",
                    REPAIRABLE,
                    scan,
                    damage.offset,
                    damage.lsn,
                    f"torn tail: {damage.reason}; {scan.dirty_end - damage.offset} bytes quarantined",
                    Cut(i, damage.offset),
                )
            break
        if i != last and not scan.sealed:
            add(
                "unsealed",
                REFUSED,
                scan,
                scan.data_end,
                scan.last_lsn + 1,
                "sealed segment ends without its seal record",
                Cut(i, scan.data_end),
            )
            break

    end_lsn = _end_lsn(scans, cut, snapshot_lsn)
    next_lsn = end_lsn + 1
    kept = scans[: cut.index + (0 if cut.offset is None else 1)] if cut is not None else scans
    if kept and kept[0].base_lsn > snapshot_lsn + 1:
        first = kept[0]
        # Salvage cannot bring the missing records back: it keeps the log as it is (no cut).
        findings.append(
            Finding(
                "log-after-snapshot",
                REFUSED,
                first.name,
                HEADER_SIZE,
                first.base_lsn,
                f"{first.name} offset {HEADER_SIZE} LSN {first.base_lsn}: log starts at LSN "
                f"{first.base_lsn} but the snapshot covers only up to LSN {snapshot_lsn}",
            )
        )
    elif snapshot_lsn > end_lsn:
        # Everything the log still holds is older than the snapshot: salvage drops it and continues after it.
        findings.append(
            Finding(
                "snapshot-beyond-log",
                REFUSED,
                "",
                -1,
                snapshot_lsn,
                f"LSN {snapshot_lsn}: snapshot is beyond the end of the log (LSN {end_lsn})",
            )
        )
        cut = Cut(0, None) if scans else None
        next_lsn = snapshot_lsn + 1
    status = max((f.severity for f in findings), key=_RANK.__getitem__, default=CLEAN)
    return Verdict(status, tuple(findings), cut, end_lsn, next_lsn)


def _end_lsn(scans: Sequence[SegmentScan], cut: Cut | None, snapshot_lsn: int) -> int:
    """Last LSN the log holds once `cut` is applied (snapshot_lsn for an empty directory)."""
    if not scans:
        return snapshot_lsn
    if cut is None:
        tail = scans[-1]
        return tail.next_lsn - 1 if tail.scanned else tail.base_lsn - 1
    tail = scans[cut.index]
    if cut.offset is None:
        prev = scans[cut.index - 1] if cut.index > 0 else None
        return prev.next_lsn - 1 if prev is not None and prev.scanned else tail.base_lsn - 1
    for damage in (tail.damage, tail.unknown_type):
        if damage is not None and damage.offset == cut.offset:
            return damage.lsn - 1
    return tail.last_lsn


def clock_warning(scans: Sequence[SegmentScan], now_us: int) -> str | None:
    """A warning when the newest record time the scans found lies more than CLOCK_SLACK_US ahead of
    `now_us` (the wall clock moved back since it was written: deadlines computed then, such as message
    TTLs, now lie that much further in the future), else None. Segments not scanned, or written before
    format version 3, hold no time and are skipped."""
    newest = next((scan for scan in reversed(scans) if scan.last_time), None)
    if newest is None or newest.last_time - now_us <= CLOCK_SLACK_US:
        return None
    ahead = (newest.last_time - now_us) // 1_000_000
    return (
        f"clock moved back by {ahead} s: the newest record (in {newest.name}) was appended at "
        f"{_utc(newest.last_time)}, the wall clock now says {_utc(now_us)}; times and deadlines (message "
        f"TTLs, expiries) taken before lie up to {ahead} s further in the future than meant"
    )


def _utc(micros: int) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(micros // 1_000_000))
    except (OverflowError, OSError, ValueError):  # a clock gone wild must not stop the open
        return f"{micros} us after the epoch"
