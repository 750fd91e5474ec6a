"""The crash harness (tools/crash_harness.py), run briefly: SIGKILL the broker under confirmed, transactional
and fan-out load, restart it on the same data directory, and check that no promise was broken.

The harness starts and kills its own broker process, so this test does not use the shared `broker` fixture and
cannot run against an external broker (OTTERMQ_TEST_URL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="the harness kills its own broker"),
]


def run_harness(tmp_path: Path, *args: str) -> dict[str, object]:
    """Run the harness as a process (its clients are threads we do not want in the test process)."""
    harness = str(ROOT / "tools" / "crash_harness.py")
    cmd = [sys.executable, harness, "--json", "--data-dir", str(tmp_path / "d")]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=100, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    report: dict[str, object] = json.loads(lines[-1])
    report["exit"] = proc.returncode
    return report


def test_sigkill_rounds_lose_nothing_confirmed(tmp_path: Path) -> None:
    # --snapshot-stress: 1 MiB segments and snapshots every 256 KiB, one fan-out queue parked until the end,
    # so kills also land in snapshots, segment deletion and compaction.
    report = run_harness(
        tmp_path,
        "--rounds",
        "4",
        "--seconds-per-round",
        "2",
        "--publishers",
        "3",
        "--consumers",
        "3",
        "--seed",
        "20261128",
        "--snapshot-stress",
    )
    detail = json.dumps(report, indent=1)
    assert report["kills"] == 4, detail
    assert report["confirmed"], f"nothing was confirmed: {detail}"
    assert report["tx_committed"], f"no transaction committed: {detail}"
    assert report["lost"] == 0, detail
    assert report["tx_violations"] == 0, detail
    assert report["reappeared"] == 0, detail
    assert report["topology_errors"] == 0, detail
    assert report["drained"] is True, detail
    assert report["ok"] is True and report["exit"] == 0, detail


def test_sigkill_rounds_keep_confirmed_stream_publishes_at_stable_offsets(tmp_path: Path) -> None:
    # --streams: a confirmed publisher to a stream queue besides the usual load; after every restart the
    # stream is read whole from `first`.
    report = run_harness(
        tmp_path, "--rounds", "3", "--seconds-per-round", "2", "--publishers", "2", "--consumers", "2",
        "--seed", "20261207", "--streams",
    )  # fmt: skip
    detail = json.dumps(report, indent=1)
    assert report["kills"] == 3, detail
    assert report["stream_confirmed"], f"nothing was confirmed on the stream: {detail}"
    assert report["stream_reads"] == 4, detail  # after each of the 3 kills, and after the clean stop
    assert report["stream_lost"] == 0, detail
    assert report["stream_offset_changes"] == 0, detail
    assert report["lost"] == 0 and report["topology_errors"] == 0, detail
    assert report["ok"] is True and report["exit"] == 0, detail
