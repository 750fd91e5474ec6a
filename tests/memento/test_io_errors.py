"""Permission and I/O errors are not damage: every `memento` command and `Log.open` name the file and the
error in one line (the tools exit 74), never a traceback, and never offer salvage for them.

Root ignores file modes, so the commands run in a subprocess without capabilities (helpers.unprivileged)
on a copy of a log with one file or directory made unreadable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memento.log import Log

from .helpers import unprivileged, wal_files

ROOT = Path(__file__).resolve().parents[2]
SEG = 4096
MEMENTO = [sys.executable, "-c", "from memento.cli import main; main()"]
OPEN = [sys.executable, "-c", "import sys; from memento.log import Log; Log.open(sys.argv[1]).close()"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("made") / "log"
    with Log.open(path, segment_size=SEG) as log:
        for i in range(300):
            log.append(1, b"record %d" % i)
        log.sync()
        log.save_snapshot(100, b"state")
    return path


def spoiled(made: Path, tmp_path: Path, target: str) -> tuple[Path, Path]:
    """A copy of `made` whose `target` (relative; SEGMENT: the second segment) has mode 000."""
    log = tmp_path / "log"
    shutil.copytree(made, log)
    victim = wal_files(log)[1] if target == "SEGMENT" else log / target
    victim.chmod(0)
    return log, victim


def run(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [*unprivileged(), *cmd, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )


TARGETS = ["SEGMENT", "wal", "snapshots/data.mdb", "snapshots", "IDENTITY", "MARK"]


CASES = [("inspect", t) for t in TARGETS] + [("verify", "SEGMENT"), ("replay", "SEGMENT")]


@pytest.mark.parametrize(("command", "target"), CASES)
def test_every_command_names_the_unreadable_file(
    made: Path, tmp_path: Path, command: str, target: str
) -> None:
    log, victim = spoiled(made, tmp_path, target)
    done = run(MEMENTO, command, str(log))
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 74, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memento: error: "), lines
    # The file itself, or for a directory the first path below it that could not be reached.
    assert str(victim) in lines[0] and "Permission denied" in lines[0], lines


@pytest.mark.parametrize("target", [*TARGETS, "snapshots/lock.mdb", "LOCK"])
def test_open_raises_an_os_error_naming_the_file_not_a_refusal(
    made: Path, tmp_path: Path, target: str
) -> None:
    log, victim = spoiled(made, tmp_path, target)
    done = run(OPEN, str(log))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("PermissionError: ") and str(victim) in last, done.stderr
    assert "salvage" not in last


def test_inspect_without_a_readable_lock_still_reports(made: Path, tmp_path: Path) -> None:
    log, _victim = spoiled(made, tmp_path, "LOCK")
    done = run(MEMENTO, "inspect", str(log))
    assert done.returncode == 0, done.stderr
    assert f"lock: {log / 'LOCK'}: Permission denied" in done.stdout
