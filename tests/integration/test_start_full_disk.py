"""Starting on a full disk: after a crash while the disk was full, and fresh on a file system smaller than
one log segment.

Strategy: the crash is the one a full disk leads to: a rollover sealed the last segment and could not
create the next one. The broker must start all the same, with the disk alarm on (connection.blocked for
publishers), let consumers drain the recovered messages (their acks are kept for the log), and resume by
itself once space returns. The first test needs no privilege: the broker runs in this process over
FillableDisk (tests/memento/helpers.py), and the crash is a copy of its directory taken while it is
suspended (the kernel keeps what was written). The second starts the real `ottermq serve` on an 8 MiB
tmpfs and skips only when mounting is not permitted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.integration.conftest import _free_port, serve_cmd
from tests.integration.test_faults import QUEUE, LiveBroker, drain
from tests.integration.test_resume import PADDING, PERSISTENT, Publisher, params, status, wait_for
from tests.memento.helpers import FillableDisk, wal_files

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="faults are injected in-process"),
]

SEGMENT = 256 * 1024
ROOT = Path(__file__).resolve().parents[2]


def crash_on_a_full_disk(data: Path, crashed: Path) -> list[str]:
    """Publish until a rollover meets the full disk, copy the directory as a crash leaves it; the
    confirmed message ids."""
    disk = FillableDisk()
    live = LiveBroker(data, disk, segment_size=SEGMENT)
    confirmed: list[str] = []
    try:
        conn = pika.BlockingConnection(params(live))
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        ch.confirm_delivery()
        for i in range(100):
            ch.basic_publish("", QUEUE, f"c{i}".encode() + PADDING, PERSISTENT)
            confirmed.append(f"c{i}")
        disk.full = True
        for i in range(1000):
            try:
                ch.basic_publish("", QUEUE, f"n{i}".encode() + PADDING, PERSISTENT)
            except pika.exceptions.NackError:
                break
            confirmed.append(f"n{i}")
        assert live.store.journal.suspended
        shutil.copytree(data, crashed, ignore=shutil.ignore_patterns("LOCK"))
        conn.close()
    finally:
        live.close()
    return confirmed


def test_a_broker_starts_after_a_crash_on_a_full_disk_and_resumes(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"
    confirmed = crash_on_a_full_disk(tmp_path / "data", crashed)
    last = wal_files(crashed / "log")[-1].read_bytes()
    assert last.rstrip(b"\0")  # the sealed segment is the last one: starting needs a new segment

    disk = FillableDisk()
    disk.full = True
    live = LiveBroker(crashed, disk, segment_size=SEGMENT)  # raised OSError (ENOSPC) before
    publisher = Publisher(live)
    try:
        assert live.broker.alarms.active == ("journal",)  # before the first client
        assert status(live) == (False, True)
        drained = drain(live)  # consumers drain; their acks are staged
        assert sorted(body[: -len(PADDING)] for body in drained) == sorted(confirmed)
        assert live.store.journal.suspended
        publisher.start()
        time.sleep(0.3)
        assert not publisher.acked
        disk.full = False  # space returns: the writer's next retry creates the segment
        wait_for(lambda: len(publisher.acked) >= 50 or bool(publisher.error), "50 confirms after space came")
        assert not publisher.error, publisher.error
        assert status(live) == (False, False) and not live.broker.alarms.active
        publisher.stop.set()
        publisher.join(20)
        # connection.unblocked is only sent to a connection that was blocked (pika may hand over the
        # blocked notice late or not at all while its first publish waits).
        assert publisher.notices[-1:] == ["unblocked"]
    finally:
        publisher.stop.set()
        live.close()

    restarted = LiveBroker(crashed, segment_size=SEGMENT)
    try:
        recovered = {body[: -len(PADDING)] for body in drain(restarted)}
    finally:
        restarted.close()
    assert not recovered & set(confirmed), "messages acked while the disk was full came back"
    assert set(publisher.acked) <= recovered


def test_a_fresh_broker_on_a_file_system_smaller_than_a_segment_starts_with_the_alarm(
    tiny_tmpfs: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "broker.log"
    port = _free_port()
    cmd = serve_cmd(tiny_tmpfs / "data", port=port)
    with log_path.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log_path.read_text() and process.poll() is None:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        text = log_path.read_text()
        assert process.poll() is None, text
        assert "Traceback" not in text
        assert "smaller than one log segment" in text and "log_segment_size" in text
        assert "resource alarm set; blocking publishers" in text
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, socket_timeout=5))
        ch = conn.channel()
        ch.queue_declare("transient.q", auto_delete=True)  # what needs no log goes on
        assert ch.queue_declare("transient.q", passive=True).method.message_count == 0
        conn.close()
    finally:
        process.terminate()
        process.wait(20)
    assert "Traceback" not in log_path.read_text()
