"""A damaged LMDB data file is refused before LMDB maps it: no tool and no `Log.open` dies of SIGBUS.

Every tool runs in a subprocess, so that a regression (LMDB mapping a truncated file) fails the test
instead of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from memento.log import Log
from memento.snapshot import SnapshotStore, check_lmdb_file

PAGE = os.sysconf("SC_PAGE_SIZE")


def make_log(path: Path, segment_size: int = 64 << 20) -> Path:
    """A log of 200 records with two snapshots; the path of its LMDB data file."""
    with Log.open(path, segment_size=segment_size) as log:
        for i in range(200):
            log.append(1, b"record %d" % i)
        log.sync()
        log.save_snapshot(100, os.urandom(300_000))
        log.save_snapshot(150, os.urandom(300_000))
    return path / "snapshots" / "data.mdb"


def half(data: Path) -> None:
    os.truncate(data, data.stat().st_size // 2)


def whole_pages(data: Path) -> None:
    # Both meta pages and a whole number of pages: only the meta's last page shows the cut.
    os.truncate(data, 4 * PAGE)


def few_bytes(data: Path) -> None:
    os.truncate(data, 7)


def empty(data: Path) -> None:
    os.truncate(data, 0)


def garbage(data: Path) -> None:
    data.write_bytes(os.urandom(data.stat().st_size))


DAMAGE: list[Callable[[Path], None]] = [half, whole_pages, few_bytes, empty, garbage]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from memento.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_tools_name_a_damaged_data_file_and_replay_the_whole_log(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    # The log holds every record from LSN 1, so the tools say what open does: a full replay, the store
    # replaced (repairable, exit 1), not a refusal.
    data = make_log(tmp_path)
    damage(data)
    for command in ("inspect", "verify"):
        result = run(command, str(tmp_path))
        assert result.returncode == 1, (command, result.returncode, result.stderr)
        named = [line for line in result.stdout.splitlines() if "snapshot-damaged" in line]
        assert len(named) == 1 and "[repairable]" in named[0] and str(data) in named[0], result.stdout
        assert "replays all of it" in named[0]
    result = run("replay", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert '"records": 200' in result.stdout.replace(" ", "").replace('"records":200', '"records": 200')


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_tools_refuse_a_damaged_data_file_when_the_log_no_longer_starts_at_lsn_1(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    data = make_log(tmp_path, segment_size=4096)
    first = sorted((tmp_path / "wal").glob("*.wal"))[0]
    first.unlink()  # as reclamation does once a snapshot covers it: only the snapshots could rebuild it
    damage(data)
    for command in ("inspect", "verify"):
        result = run(command, str(tmp_path))
        assert result.returncode == 2, (command, result.returncode, result.stderr)
        refused = [line for line in result.stdout.splitlines() if "[refused]" in line]
        assert any("snapshot-damaged" in line and str(data) in line for line in refused), result.stdout
    result = run("replay", str(tmp_path))
    assert result.returncode == 4, result.stderr
    assert "the log starts at LSN" in result.stderr and "there is no snapshot" in result.stderr


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_open_replays_the_whole_log_past_a_damaged_data_file(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    # The log still holds every record from LSN 1: nothing is lost, so open falls back to a full replay
    # (as for a missing store), moves the broken store to quarantine/ and makes a new one.
    data = make_log(tmp_path)
    damage(data)
    size = data.stat().st_size
    script = (
        "import sys\n"
        "from memento.log import Log\n"
        "with Log.open(sys.argv[1]) as log:\n"
        "    print(log.snapshot_lsn, sum(1 for _ in log.replay()))\n"
        "    log.save_snapshot(200, b'state')\n"
        "    print(*log.recovery_report.warnings, sep='\\n')\n"
        "with Log.open(sys.argv[1]) as log:\n"
        "    print(log.snapshot_lsn, log.snapshots.status)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
    counts, *warnings, again = result.stdout.splitlines()
    assert counts == "0 200" and again == "200 ok"  # snapshots are written (and read) again
    assert any(w.startswith("snapshot store unusable, replaying the whole log") for w in warnings), warnings
    (moved,) = (tmp_path / "quarantine").glob("snapshots.*")
    assert (moved / "data.mdb").stat().st_size == size  # LMDB did not write into it


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_open_refuses_a_damaged_data_file_when_the_log_is_not_whole(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    with Log.open(tmp_path, segment_size=4096) as log:
        for i in range(200):
            log.append(1, b"record %d" % i)
        log.sync()
        log.save_snapshot(150, os.urandom(300_000))
    data = tmp_path / "snapshots" / "data.mdb"
    min((tmp_path / "wal").glob("*.wal")).unlink()  # records from LSN 1 are gone: the snapshot was needed
    damage(data)
    size = data.stat().st_size
    script = (
        "import sys\n"
        "from memento.errors import MementoError\n"
        "from memento.log import Log\n"
        "try:\n"
        "    Log.open(sys.argv[1]).close()\n"
        "except MementoError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.startswith("RecoveryRefused ") and str(data) in result.stdout
    assert data.stat().st_size == size  # LMDB did not write into it (it makes a new store of an empty file)


def test_healthy_stores_pass_the_check(tmp_path: Path) -> None:
    # Growing, shrinking and replaced snapshots: LMDB's free pages at the end never fail the check.
    with SnapshotStore(tmp_path) as store:
        for lsn, size in enumerate([0, 10, 5_000_000, 100, 3_000_000, 1, 2_000_000, 7], start=1):
            store.save(lsn, os.urandom(size))
            assert check_lmdb_file(tmp_path / "data.mdb") is None
    with SnapshotStore(tmp_path, readonly=True) as again:
        loaded = again.load_latest()
        assert loaded is not None and loaded.lsn == 8


def test_salvage_ignores_a_damaged_data_file(tmp_path: Path) -> None:
    data = make_log(tmp_path)
    half(data)
    script = (
        "import sys\n"
        "from memento.log import Log\n"
        "with Log.open(sys.argv[1], salvage=True) as log:\n"
        "    print(log.snapshot_lsn, sum(1 for _ in log.replay()))\n"
        "    print(*log.recovery_report.warnings, sep='\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
    counts, *warnings = result.stdout.splitlines()
    assert counts == "0 200"  # the whole log is replayed
    # The log is whole: with or without salvage, the store is replaced by a full replay.
    assert any(w.startswith("snapshot store unusable") and str(data) in w for w in warnings)
