"""Kill -9 a process that appends with group commit, at random moments: every LSN it reported durable
must be readable, with its payload, after reopening."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memento.inspect import inspect_log, iter_records
from memento.log import Log
from memento.record import HEAD_SIZE

from .helpers import patch, wal_files

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tools" / "memento_crash_child.py"
SEG = 64 * 1024

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def run_and_kill(path: Path, delay: float) -> dict[int, bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(SEG), "32"], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out = proc.stdout.read()
    proc.wait()
    durable: dict[int, bytes] = {}
    for line in out.split(b"\n")[:-1]:  # the last piece may be a partial line
        lsn, payload = line.split(b" ")
        durable[int(lsn)] = bytes.fromhex(payload.decode())
    return durable


def tear_unsynced_tail(path: Path, durable: int, rng: random.Random) -> None:
    """Simulate losing writes that were never reported durable: from a random byte inside the records
    after `durable` (in the last segment), overwrite the rest of the data with zeros or garbage."""
    # Read-only: opening and closing the log would record a clean stop, after which a lost tail is
    # (rightly) refused.
    insp = inspect_log(path)
    last_seq = insp.segments[-1].seq
    extra = [r for r in iter_records(insp) if r.lsn > durable and r.position.segment == last_seq]
    if not extra:
        return
    start = extra[0].position.offset
    end = extra[-1].position.offset + HEAD_SIZE + len(extra[-1].payload)
    cut = rng.randrange(start, end)
    filler = bytes(end - cut) if rng.random() < 0.5 else os.urandom(end - cut)
    patch(wal_files(path)[-1], cut, filler)


def test_sigkill_never_loses_a_durable_lsn(tmp_path: Path) -> None:
    rng = random.Random(1234)
    reported: dict[int, bytes] = {}
    for _ in range(6):
        reported.update(run_and_kill(tmp_path, rng.uniform(0.05, 0.6)))
        tear_unsynced_tail(tmp_path, max(reported), rng)
        with Log.open(tmp_path, segment_size=SEG) as log:
            assert log.recovery_report.status in ("clean", "repairable")
            found = {r.lsn: r.payload for r in log.replay()}
            missing = [lsn for lsn in reported if found.get(lsn) != reported[lsn]]
            assert not missing, f"durable LSNs lost or changed: {missing[:10]}"
            assert sorted(found) == list(range(1, len(found) + 1))
    assert len(reported) > 500
