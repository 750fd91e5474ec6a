"""The crash harness in --cluster mode (tools/crash_harness.py), run briefly: three nodes on the session's
etcd, publishers with confirms and transactions against every node (through the followers' proxies too),
the leader SIGKILLed three times and started again; no confirmed message lost, no transaction partial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cluster.conftest import Etcd

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_sigkills_of_the_leader_lose_nothing_confirmed(etcd: Etcd, tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(ROOT / "tools" / "crash_harness.py"), "--cluster", "--etcd", etcd.url,
        "--json", "--data-dir", str(tmp_path / "c"), "--rounds", "3", "--seconds-per-round", "1.5",
        "--publishers", "3", "--consumers", "3", "--seed", "20261201",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=140, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    report = json.loads(lines[-1])
    detail = json.dumps(report, indent=1)
    assert report["kills"] == 3 and len(report["failover_seconds"]) == 3, detail
    assert report["confirmed"] and report["tx_committed"], f"nothing confirmed or committed: {detail}"
    # The correctness facts, exactly: the failover times are printed, not asserted (a loaded machine).
    assert report["lost"] == 0, detail
    assert report["tx_violations"] == 0, detail
    assert report["reappeared"] == 0 and report["unknown"] == 0, detail
    assert report["topology_errors"] == 0, detail
    assert report["drained"] is True, detail
    assert report["ok"] is True and proc.returncode == 0, detail
    print(f"failovers {report['failover_seconds']}, first confirms {report['first_confirm_seconds']}")
