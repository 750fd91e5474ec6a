"""Salvage through `Log.open`: damage the snapshot covers keeps its segments, a dry run changes nothing,
a bad record is cut at, and what salvage accepted is not refused again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from memento.errors import LogFailed, RecoveryRefused
from memento.log import Log
from memento.recovery import ACCEPTED, CLEAN, BadRecord
from memento.salvage import ACCEPTED_FILE, PLAN_PREFIX

from .helpers import flip, wal_files

SEG = 4096


def make(path: Path, count: int = 200, snapshot: bool = True) -> list[bytes]:
    """A log of `count` records in small segments; a snapshot at its end."""
    payloads = [b"%04d" % i * 25 for i in range(count)]
    with Log.open(path, segment_size=SEG) as log:
        for payload in payloads:
            log.append(1, payload)
        log.sync()
        if snapshot:
            log.save_snapshot(count, b"state")
    return payloads


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("LOCK", "lock.mdb")
    }


def test_a_bad_header_under_the_snapshot_keeps_every_segment(tmp_path: Path) -> None:
    make(tmp_path)
    victim = wal_files(tmp_path)[1]
    flip(victim, 20)
    with pytest.raises(RecoveryRefused, match="header"):
        Log.open(tmp_path, segment_size=SEG)
    names = [p.name for p in wal_files(tmp_path)]
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        report = log.recovery_report
        assert report.salvaged and report.quarantined == [] and log.end_lsn == 200
        assert report.damaged == {2: 64} and report.plan is not None
        assert report.plan.kept_damaged == [victim.name] and not report.plan.first_dropped
        first = log.read(log.replay(after_lsn=0).__next__().position)  # records still read back
        assert first.lsn == 1
    assert [p.name for p in wal_files(tmp_path)][: len(names)] == names
    assert (tmp_path / ACCEPTED_FILE).exists()
    with Log.open(tmp_path, segment_size=SEG) as log:  # accepted: not refused again
        assert log.recovery_report.status == CLEAN
        assert [f.severity for f in log.recovery_report.findings] == [ACCEPTED]
        assert log.recovery_report.damaged == {2: 64}  # its bodies are still checked by the caller


def test_new_damage_after_a_salvage_is_refused_again(tmp_path: Path) -> None:
    make(tmp_path)
    flip(wal_files(tmp_path)[1], 20)
    Log.open(tmp_path, segment_size=SEG, salvage=True).close()
    flip(wal_files(tmp_path)[2], 20)
    with pytest.raises(RecoveryRefused, match=wal_files(tmp_path)[2].name):
        Log.open(tmp_path, segment_size=SEG)


def test_a_dry_run_changes_nothing_and_is_read_only(tmp_path: Path) -> None:
    make(tmp_path, snapshot=False)
    tail = wal_files(tmp_path)[-2]  # damage in a sealed segment after the (missing) snapshot: a cut
    flip(tail, 64 + 30)
    before = digest(tmp_path)
    with Log.open(tmp_path, segment_size=SEG, salvage=True, dry_run=True) as log:
        plan = log.recovery_report.plan
        assert plan is not None and plan.first_dropped == log.end_lsn + 1 and plan.last_dropped == 200
        assert plan.cut_segment == tail.name and plan.dropped_segments == [wal_files(tmp_path)[-1].name]
        lines = plan.lines()
        assert all(line.startswith(PLAN_PREFIX) for line in lines)
        assert any(f"({plan.records_dropped} records)" in line for line in lines)
        assert [r.lsn for r in log.replay()] == list(range(1, log.end_lsn + 1))  # stops at the cut
        with pytest.raises(LogFailed, match="dry run"):
            log.append(1, b"x")
    assert digest(tmp_path) == before
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:  # the real salvage does what was planned
        assert log.end_lsn == plan.end_lsn and len(log.recovery_report.quarantined) == 2


def test_a_bad_record_is_cut_at_with_salvage(tmp_path: Path) -> None:
    make(tmp_path, snapshot=False)
    with Log.open(tmp_path, segment_size=SEG) as log:
        records = list(log.replay())
    bad = records[150]
    cut = BadRecord(bad.position.segment, bad.position.offset, bad.lsn, "ValueError: nonsense")
    with Log.open(tmp_path, segment_size=SEG, salvage=True, bad_record=cut) as log:
        assert log.end_lsn == bad.lsn - 1 and log.recovery_report.salvaged
        plan = log.recovery_report.plan
        assert plan is not None and (plan.first_dropped, plan.last_dropped) == (bad.lsn, 200)
        assert log.append(1, b"after") == bad.lsn  # the log continues where it was cut
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.end_lsn == bad.lsn and log.recovery_report.status == CLEAN
    quarantined = sorted(os.listdir(tmp_path / "quarantine"))
    assert quarantined and any(name.endswith(".bin") for name in quarantined)


def test_a_snapshot_beyond_the_log_keeps_the_segments_it_covers(tmp_path: Path) -> None:
    make(tmp_path)
    newest = wal_files(tmp_path)[-1]
    newest.unlink()  # the newest segment is lost: the snapshot (LSN 200) lies beyond the log
    kept = [p.name for p in wal_files(tmp_path)]
    with pytest.raises(RecoveryRefused, match="beyond the end of the log"):
        Log.open(tmp_path, segment_size=SEG)
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        assert log.end_lsn == 200 and log.recovery_report.quarantined == []
        assert log.append(1, b"next") == 201
    assert [p.name for p in wal_files(tmp_path)][: len(kept)] == kept
    with Log.open(tmp_path, segment_size=SEG) as log:
        assert log.end_lsn == 201
    from memento.inspect import inspect_log

    assert inspect_log(tmp_path).status == CLEAN  # a full scan accepts the unsealed segment it left


def test_reclaim_keeps_a_segment_salvage_kept_damaged_instead_of_failing(tmp_path: Path) -> None:
    make(tmp_path)
    first, victim = wal_files(tmp_path)[:2]
    flip(victim, 64 + 12)  # the first record's LSN field: the walk cannot go past it
    with Log.open(tmp_path, segment_size=SEG, salvage=True) as log:
        assert victim.name in str(log.recovery_report.findings)
        result = log.reclaim(200, lambda pos: False)
        assert result.deleted == (first.name,)  # the older one goes; the damaged one stays, no error
    assert victim.exists()


@pytest.mark.parametrize("where", ["middle", "last record"])
def test_damage_under_the_snapshot_in_the_last_segment_cuts_nothing(tmp_path: Path, where: str) -> None:
    # One large segment, a snapshot at its end (a clean stop): the segment is the last one, yet every
    # record in it is covered, so valid records after the damage must stay readable.
    payloads = [b"%04d" % i * 25 for i in range(200)]
    with Log.open(tmp_path) as log:
        for payload in payloads:
            log.append(1, payload)
        log.sync()
        log.save_snapshot(200, b"state")
        positions = [r.position for r in log.replay(after_lsn=0)]
    victim = 99 if where == "middle" else 199
    (segment,) = wal_files(tmp_path)
    flip(segment, positions[victim].offset + 30)
    with pytest.raises(RecoveryRefused):
        Log.open(tmp_path)
    with Log.open(tmp_path, salvage=True, dry_run=True) as log:
        assert [r.lsn for r in log.replay()] == [] and log.end_lsn == 200
    with Log.open(tmp_path, salvage=True) as log:
        report = log.recovery_report
        assert report.quarantined == [] and report.damaged == {1: positions[victim].offset}
        assert [log.read(p).lsn for i, p in enumerate(positions) if i != victim] == [
            i + 1 for i in range(200) if i != victim
        ]
        assert log.append(1, b"next") == 201
    with Log.open(tmp_path) as log:  # permanent: the next open needs no salvage
        assert log.end_lsn == 201 and [r.lsn for r in log.replay()] == [201]
    from memento.inspect import inspect_log

    assert inspect_log(tmp_path).status == CLEAN  # nor does a full scan


def test_inspect_reports_damage_a_salvage_accepted(tmp_path: Path) -> None:
    from memento.inspect import inspect_log

    make(tmp_path)
    flip(wal_files(tmp_path)[1], 20)
    assert inspect_log(tmp_path).status == "refused"
    Log.open(tmp_path, segment_size=SEG, salvage=True).close()
    inspection = inspect_log(tmp_path)
    assert inspection.status == CLEAN and inspection.exit_code == 0
    assert [f.severity for f in inspection.findings] == [ACCEPTED]
