"""Classifying what a scan of the log directory found: clean, repairable (a torn tail), refused, or
written by an unsupported version.

Strategy: `classify` is a pure function of the segment scans and the snapshot LSN, so every kind of damage
is a unit test of plain values. It returns the findings and one cut: the point from which the log is
dropped, either to repair a torn tail or, with salvage, to keep what is valid up to the first damage.

Damage inside segments the snapshot wholly covers is never a reason to cut: replay does not need their
records, and the snapshot's queues may still point into them for message bodies. Such findings are
refused like any other, but they set no cut: with salvage the segments stay where they are and the
verdict's `damaged` says where bodies may be unreadable (the caller checks each message that lies
there). A finding an earlier salvage already accepted (`accepted`) is reported as ACCEPTED, not refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence, Set
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from memento.identity import IDENTITY_FILE, MARK_FILE, Mark, show_id
from memento.scan import SegmentScan
from memento.segment import FORMAT_VERSION, HEADER_SIZE, segment_name

if TYPE_CHECKING:
    from memento.salvage import SalvagePlan

CLEAN: Final = "clean"
REPAIRABLE: Final = "repairable"
REFUSED: Final = "refused"
UNSUPPORTED: Final = "unsupported"
# Damage in a covered segment that an earlier salvage accepted (recorded in the log directory): reported,
# never refused again.
ACCEPTED: Final = "accepted"
_RANK: Final = {CLEAN: 0, ACCEPTED: 0, REPAIRABLE: 1, REFUSED: 2, UNSUPPORTED: 3}
# How far the newest record's time may lie ahead of the wall clock before open warns that the clock moved
# back (microseconds): more than clock adjustments by NTP, less than any TTL worth flagging.
CLOCK_SLACK_US: Final = 60_000_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing recovery noticed. `severity` is REPAIRABLE, REFUSED, UNSUPPORTED or ACCEPTED; `covered`
    when it lies in segments the snapshot wholly covers (it sets no cut)."""

    kind: str
    severity: str
    segment: str
    offset: int
    lsn: int
    message: str
    covered: bool = False

    @property
    def key(self) -> tuple[str, str, int]:
        """What identifies this finding when an earlier salvage accepted it."""
        return (self.segment, self.kind, self.offset)


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record whose frame and checksum are valid but whose reader cannot decode or apply it: salvage
    cuts the log there as it would at physical damage."""

    seq: int
    offset: int
    lsn: int
    reason: str


@dataclass(frozen=True, slots=True)
class Cut:
    """Keep segments[:index] whole and segments[index] up to `offset`; drop everything after.
    `offset` None drops segments[index] too."""

    index: int
    offset: int | None
    lsn: int = -1  # the first LSN dropped when it is not that of the damage found there (a bad record)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of `classify`: the worst severity, what was found, and where to cut."""

    status: str
    findings: tuple[Finding, ...]
    cut: Cut | None
    end_lsn: int  # last LSN kept once the cut is applied
    next_lsn: int  # LSN of the next append once the cut is applied
    # Segment seq -> offset from which records of a kept segment may be unreadable (covered damage, the
    # cut segment past the cut, missing covered segments): message bodies there must be checked.
    damaged: dict[int, int] = field(default_factory=dict)


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
    # Verdict.damaged as applied: where message bodies may be unreadable (the caller checks each one).
    damaged: dict[int, int] = field(default_factory=dict)
    # What salvage drops (memento.salvage.SalvagePlan), set when salvage acts or plans.
    plan: SalvagePlan | None = None
    snapshots_replaced: bool = False  # an unusable snapshot store was moved to quarantine/, a new one made
    # The LSN MARK says the last run stopped cleanly at (None: it did not, or MARK cannot tell).
    clean_stop_lsn: int | None = None

    @property
    def repaired(self) -> bool:
        """True when recovery changed anything on disk."""
        return bool(self.quarantined or self.dropped_tmp)


@dataclass(frozen=True, slots=True)
class Identity:
    """Whose log this is, as far as the directory tells (`resolve_identity`): the log id segments must
    carry (None: not known yet, a fresh or pre-version-3 log), the MARK state to check the segment set
    against (None: nothing to check), and what is wrong with IDENTITY, MARK or the snapshot store's id."""

    log_id: bytes | None
    mark: Mark | None
    findings: tuple[Finding, ...]
    store_foreign: bool = False


def _dir_finding(kind: str, message: str, lsn: int = -1) -> Finding:
    return Finding(kind, REFUSED, "", -1, lsn, message)


def resolve_identity(
    root: str,
    identity: bytes | str | None,
    mark: Mark | str | None,
    scans: Sequence[SegmentScan],
    store_id: bytes | str | None,
) -> Identity:
    """Check IDENTITY (`identity`: the id, a damage sentence, or None when missing), MARK and the snapshot
    store's id (`store_id`, None when it records none) against each other and the segments' ids.

    IDENTITY is written before the first segment and MARK before IDENTITY (FORMAT.md), so a missing
    IDENTITY is expected only in a fresh or pre-version-3 directory, where no segment and no store
    carries an id yet; anywhere else it, and a missing MARK next to an IDENTITY, is damage: refused.
    """
    findings: list[Finding] = []
    seen = [s.header.log_id for s in scans if s.header is not None and s.header.log_id is not None]
    valid_mark = mark if isinstance(mark, Mark) else None
    if isinstance(identity, bytes):
        log_id: bytes | None = identity
    else:
        # What salvage adopts: MARK's id when segments agree with it, else the newest segment's.
        log_id = (
            valid_mark.log_id
            if valid_mark is not None and (not seen or valid_mark.log_id in seen)
            else seen[-1]
            if seen
            else store_id
            if isinstance(store_id, bytes)
            else None
        )
        if isinstance(identity, str):
            findings.append(_dir_finding("identity-damaged", f"{identity}: the log's identity is unreadable"))
        elif seen or isinstance(store_id, bytes):
            holder = "segments carry" if seen else "the snapshot store records"
            findings.append(
                _dir_finding(
                    "identity-missing",
                    f"{root}/{IDENTITY_FILE} is missing but {holder} log id {show_id(log_id)}: "
                    "the directory lost a file or was assembled from pieces",
                )
            )
        elif valid_mark is None:
            log_id = None  # fresh, or written before version 3: open gives it an id
    checked: Mark | None = None
    if valid_mark is not None:
        if log_id is not None and valid_mark.log_id != log_id:
            findings.append(
                _dir_finding(
                    "mark-foreign",
                    f"{root}/{MARK_FILE} belongs to log {show_id(valid_mark.log_id)}, "
                    f"this log is {show_id(log_id)}",
                )
            )
        else:
            checked = valid_mark
    elif isinstance(mark, str):
        findings.append(_dir_finding("mark-damaged", f"{mark}: the newest segments cannot be checked"))
    elif isinstance(identity, bytes):
        findings.append(
            _dir_finding(
                "mark-missing",
                f"{root}/{MARK_FILE} is missing: whether the newest segments are all there cannot be checked",
            )
        )
    foreign = False
    if isinstance(store_id, str):
        findings.append(_dir_finding("snapshot-foreign", f"{store_id}"))
        foreign = True
    elif store_id is not None and log_id is not None and store_id != log_id:
        findings.append(
            _dir_finding(
                "snapshot-foreign",
                f"{root}/snapshots belongs to log {show_id(store_id)}, this log is {show_id(log_id)}",
            )
        )
        foreign = True
    return Identity(log_id, checked, tuple(findings), foreign)


def classify(
    scans: Sequence[SegmentScan],
    snapshot_lsn: int,
    identity: Identity | None = None,
    *,
    accepted: Set[tuple[str, str, int]] = frozenset(),
    bad_record: BadRecord | None = None,
    tail_end: int | None = None,
) -> Verdict:
    """Classify the scans of all segments (sorted by sequence number) against the snapshot LSN and, when
    given, the log's identity: its id (a segment with another is foreign) and MARK (the newest segment
    created and the clean stop's LSN must still be there).

    `accepted`: keys (`Finding.key`) of covered findings an earlier salvage accepted. `bad_record`: a
    record the caller could not decode or apply, cut at like damage. `tail_end`: the last LSN of the run
    of valid records that follows damage in the last segment (None: not known)."""
    findings: list[Finding] = list(identity.findings) if identity is not None else []
    log_id = identity.log_id if identity is not None else None
    cut: Cut | None = None
    damaged: dict[int, int] = {}

    def add(
        kind: str, severity: str, scan: SegmentScan | None, offset: int, lsn: int, message: str, at: Cut
    ) -> None:
        nonlocal cut
        name = scan.name if scan is not None else ""
        where = f"{name} offset {offset} LSN {lsn}" if name else f"LSN {lsn}"
        findings.append(Finding(kind, severity, name, offset, lsn, f"{where}: {message}"))
        if cut is None:
            cut = at

    def add_covered(kind: str, scan: SegmentScan, offset: int, lsn: int, message: str, seqs: range) -> None:
        """Damage the snapshot covers: no cut, the segments stay, their bodies are checked."""
        where = f"{scan.name} offset {offset} LSN {lsn}"
        finding = Finding(kind, REFUSED, scan.name, offset, lsn, f"{where}: {message}", covered=True)
        if finding.key in accepted:
            finding = replace(
                finding, severity=ACCEPTED, message=f"{finding.message} (accepted by an earlier salvage)"
            )
        findings.append(finding)
        for seq in seqs:
            at = max(offset, HEADER_SIZE) if seq == scan.seq else HEADER_SIZE
            damaged[seq] = min(damaged.get(seq, at), at)

    def covered(i: int) -> bool:
        """Every record of segment i lies at or below the snapshot (by the next segment's name)."""
        return i + 1 < len(scans) and scans[i + 1].base_lsn <= snapshot_lsn + 1

    def covered_tail(scan: SegmentScan, lsn: int) -> bool:
        """Damage at `lsn` in the last segment lies under the snapshot, and so does every valid record
        after it (`tail_end`, found by the opener): cutting there would drop records nothing replays."""
        if lsn > snapshot_lsn:
            return False
        return scan.resync is None or (tail_end is not None and tail_end <= snapshot_lsn)

    last = len(scans) - 1
    after_damage = False  # the previous segment had covered damage: its end LSN cannot be trusted
    for i, scan in enumerate(scans):
        if cut is not None:
            break
        header = scan.header
        previous_damaged, after_damage = after_damage, False
        if header is None:
            message = f"segment header invalid: {scan.header_problem}"
            if covered(i):
                add_covered("bad-header", scan, 0, scan.base_lsn, message, range(scan.seq, scan.seq + 1))
                after_damage = True
                continue
            add("bad-header", REFUSED, scan, 0, scan.base_lsn, message, Cut(i, None))
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
        if log_id is not None and header.log_id is not None and header.log_id != log_id:
            add(
                "foreign-segment",
                REFUSED,
                scan,
                0,
                scan.base_lsn,
                f"segment belongs to log {show_id(header.log_id)}, this log is {show_id(log_id)}",
                Cut(i, None),
            )
            break
        if header.seq != scan.seq or header.base_lsn != scan.base_lsn:
            message = (
                f"header names segment {header.seq} base LSN {header.base_lsn}, not what the file name says"
            )
            if covered(i):
                add_covered("bad-header", scan, 0, scan.base_lsn, message, range(scan.seq, scan.seq + 1))
                after_damage = True
                continue
            add("bad-header", REFUSED, scan, 0, scan.base_lsn, message, Cut(i, None))
            break
        if i > 0:
            prev = scans[i - 1]
            if scan.seq != prev.seq + 1:
                message = f"segments {prev.seq + 1}..{scan.seq - 1} are missing"
                if scan.base_lsn <= snapshot_lsn + 1:
                    # Their records are all covered: only the bodies that lay in them are lost.
                    add_covered(
                        "missing-segment", scan, 0, scan.base_lsn, message, range(prev.seq + 1, scan.seq)
                    )
                    previous_damaged = True  # what the missing ones held is unknown: no LSN check
                else:
                    add("missing-segment", REFUSED, scan, 0, scan.base_lsn, message, Cut(i, None))
                    break
            expected = prev.next_lsn if prev.scanned and not previous_damaged else None
            if expected is not None and scan.base_lsn != expected:
                message = f"segment starts at LSN {scan.base_lsn}, previous one ends before LSN {expected}"
                if scan.base_lsn <= snapshot_lsn + 1:
                    add_covered("lsn-gap", scan, 0, scan.base_lsn, message, range(prev.seq, prev.seq + 1))
                else:
                    add("lsn-gap", REFUSED, scan, 0, scan.base_lsn, message, Cut(i, None))
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
        if (
            bad_record is not None
            and bad_record.seq == scan.seq
            and (damage is None or bad_record.offset < damage.offset)
            and (scan.unknown_type is None or bad_record.offset < scan.unknown_type.offset)
        ):
            add(
                "bad-record",
                REFUSED,
                scan,
                bad_record.offset,
                bad_record.lsn,
                f"record cannot be decoded or applied: {bad_record.reason}",
                Cut(i, bad_record.offset, bad_record.lsn),
            )
            break
        if scan.unknown_type is not None and (damage is None or scan.unknown_type.offset < damage.offset):
            u = scan.unknown_type
            add("unknown-type", UNSUPPORTED, scan, u.offset, u.lsn, u.reason, Cut(i, u.offset))
            break
        if damage is not None:
            if covered(i) or (i == last and covered_tail(scan, damage.lsn)):
                reason = damage.reason
                if scan.resync is not None:
                    reason += (
                        f", followed by a valid record (LSN {scan.resync.lsn} at offset {scan.resync.offset})"
                    )
                kind = "corrupt-record" if scan.resync is not None else "corrupt-sealed"
                add_covered(kind, scan, damage.offset, damage.lsn, reason, range(scan.seq, scan.seq + 1))
                after_damage = True
                continue
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
            message = "sealed segment ends without its seal record"
            if covered(i):
                add_covered("unsealed", scan, scan.data_end, scan.last_lsn + 1, message, range(0))
                after_damage = True
                continue
            add("unsealed", REFUSED, scan, scan.data_end, scan.last_lsn + 1, message, Cut(i, scan.data_end))
            break

    end_lsn = _end_lsn(scans, cut, snapshot_lsn)
    next_lsn = end_lsn + 1
    kept = scans[: cut.index + (0 if cut.offset is None else 1)] if cut is not None else scans
    if cut is not None and cut.offset is not None and end_lsn < snapshot_lsn:
        # Records the snapshot covers are cut away with the rest: bodies that lay there are lost.
        cut_seq = scans[cut.index].seq
        damaged[cut_seq] = min(damaged.get(cut_seq, cut.offset), cut.offset)
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
        # Everything the log still holds is older than the snapshot. Salvage keeps it (the snapshot's
        # queues point into it) and continues after the snapshot; the bodies of the records lost between
        # the end of the log and the snapshot are checked (the tail segment, and any segment that is gone).
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
        if kept:
            tail = kept[-1]
            end = cut.offset if cut is not None and cut.offset is not None else tail.data_end
            if tail.scanned:
                damaged[tail.seq] = min(damaged.get(tail.seq, end), end)
        next_lsn = snapshot_lsn + 1
    mark = identity.mark if identity is not None else None
    if mark is not None:
        findings.extend(_mark_findings(scans, mark, end_lsn))
    status = max(
        (f.severity for f in findings if f.severity != ACCEPTED), key=_RANK.__getitem__, default=CLEAN
    )
    return Verdict(status, tuple(findings), cut, end_lsn, next_lsn, damaged)


def _mark_findings(scans: Sequence[SegmentScan], mark: Mark, end_lsn: int) -> list[Finding]:
    """Newest segments missing (MARK names a newer one than the newest file), or a log that ends before
    the LSN of a clean stop. Neither cuts anything: what is gone is gone; salvage accepts the loss."""
    found: list[Finding] = []
    newest = scans[-1].seq if scans else 0
    if mark.newest_seq > newest:
        name = segment_name(mark.newest_seq, mark.newest_base)
        present = scans[-1].name if scans else "none"
        which = (
            f"segment {mark.newest_seq} is"
            if mark.newest_seq == newest + 1
            else f"segments {newest + 1}..{mark.newest_seq} are"
        )
        found.append(
            Finding(
                "missing-newest",
                REFUSED,
                name,
                -1,
                mark.newest_base,
                f"{name}: newest {which} missing: the log's high-water mark says {name} was created, "
                f"the newest file left is {present}; the log ends at LSN {end_lsn}",
            )
        )
    if mark.clean_lsn is not None and end_lsn < mark.clean_lsn:
        tail = scans[-1].name if scans else ""
        found.append(
            Finding(
                "ended-before-clean-stop",
                REFUSED,
                tail,
                -1,
                end_lsn + 1,
                f"LSN {end_lsn + 1}: the log was stopped cleanly at LSN {mark.clean_lsn} but ends at LSN "
                f"{end_lsn}: LSNs {end_lsn + 1}..{mark.clean_lsn} are missing",
            )
        )
    return found


def _end_lsn(scans: Sequence[SegmentScan], cut: Cut | None, snapshot_lsn: int) -> int:
    """Last LSN the log holds once `cut` is applied (snapshot_lsn for an empty directory)."""
    if not scans:
        return snapshot_lsn
    if cut is None:
        tail = scans[-1]
        return tail.next_lsn - 1 if tail.scanned else tail.base_lsn - 1
    tail = scans[cut.index]
    if cut.lsn >= 0:
        return cut.lsn - 1
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
