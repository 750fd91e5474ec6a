"""Stop signals reach the loop whenever they come, and a stuck loop cannot make the process ignore them.

Each case runs a small program in a child process (signal handlers belong to the main thread of a process).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = """
import asyncio, sys, time
from ottermq.server.signals import StallGuard, StopSignals

signals = StopSignals(StallGuard(limit=1.0))
signals.install()
early = sys.argv[1] == "early"
if early:
    import os, signal
    os.kill(os.getpid(), signal.SIGTERM)  # before any loop exists


async def main() -> None:
    signals.attach(asyncio.get_running_loop())
    if sys.argv[1] == "stuck":
        def spin() -> None:
            while True:  # a callback that never returns: the loop never turns again
                pass
        asyncio.get_running_loop().call_soon(spin)
    print("ready", flush=True)
    await signals.event.wait()
    print("stopping", signals.received, flush=True)


asyncio.run(main())
signals.restore()
"""


def run(mode: str, send: bool) -> tuple[int, str, float]:
    child = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    started = time.monotonic()
    if send:
        time.sleep(0.2)
        child.send_signal(signal.SIGTERM)
    out = child.stdout.read()  # to the end: the child has exited (or the test's timeout ends it)
    return child.wait(timeout=5), out, time.monotonic() - started


def test_a_signal_sets_the_stop_event() -> None:
    code, out, _ = run("idle", send=True)
    assert code == 0 and "stopping ['SIGTERM']" in out, out


def test_a_signal_before_the_loop_runs_stops_it_as_soon_as_it_starts() -> None:
    code, out, _ = run("early", send=False)
    assert code == 0 and "stopping ['SIGTERM']" in out, out


def test_a_stuck_loop_cannot_make_the_process_ignore_the_signal() -> None:
    code, out, elapsed = run("stuck", send=True)
    assert code == 1, out
    assert "has not turned" in out
    assert elapsed < 10, elapsed
