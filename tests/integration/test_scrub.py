"""The background scrub and the failures of background work, with the real broker and real damage.

A byte of a confirmed message is flipped in a sealed segment while the broker runs: the scrub reports it
(log line naming segment, offset, LSN and the queue; `ctl status`; `/metrics`) within seconds, before any
consumer reaches it, and the broker keeps serving; the consumer then gets every other message. The scrub
keeps to its rate, and `scrub_rate = 0` turns it off. A snapshot that cannot be written (a full file
system) and a reclaim that cannot read a segment (moved away) are counted with their cause, and the broker
keeps serving; both succeed again once the cause is gone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ottermq.ctl import request
from ottermq.server.control import SOCKET_NAME
from tests.integration.conftest import _free_port
from tests.integration.test_restart import PERSISTENT, Node, drain_all

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20
SEGMENT_SIZE = MiB
BODIES = [b"%06d" % i * 3000 for i in range(80)]  # ~1.4 MB: the first segment is sealed; each findable
DAMAGED = 3
FAST = {"log_segment_size": SEGMENT_SIZE, "scrub_rate": 256 * MiB, "scrub_interval": 0.3}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path, http_port=_free_port(), **FAST)
    try:
        yield n
    finally:
        n.close()


def status(node: Node) -> dict[str, Any]:
    """`ctl status` through the control socket (what `ottermq ctl status` sends)."""
    result: dict[str, Any] = request(node.data_dir / SOCKET_NAME, "status", {})
    return result


def status_cli(node: Node) -> dict[str, Any]:
    """`ottermq ctl --json status`, the command itself."""
    out = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(node.data_dir), "--json", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def metrics(node: Node) -> dict[str, float]:
    """The unlabelled samples of /metrics by name (labelled ones by name{labels})."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def publish(node: Node, bodies: list[bytes], queue: str = "q") -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish("", queue, body, PERSISTENT)
    connection.close()


def segments(node: Node) -> list[Path]:
    return sorted((node.data_dir / "log" / "wal").glob("*.wal"))


def flip_in_sealed_segment(node: Node, body: bytes) -> Path:
    """Flip one byte in the middle of `body` where a sealed segment holds it, in place (the broker runs)."""
    for segment in segments(node)[:-1]:
        at = segment.read_bytes().find(body)
        if at >= 0:
            fd = os.open(segment, os.O_RDWR)
            try:
                middle = at + len(body) // 2
                os.pwrite(fd, bytes([os.pread(fd, 1, middle)[0] ^ 0xFF]), middle)
            finally:
                os.close(fd)
            return segment
    raise AssertionError("the message's body is not in a sealed segment")


def test_the_scrub_reports_damage_in_a_sealed_segment_before_a_consumer_reaches_it(node: Node) -> None:
    node.start()
    publish(node, BODIES)
    node.restart()  # contents are read back from the log from now on, not served from memory
    first = wait_for(lambda: (s := status(node))["scrub_passes"] >= 1 and s, "a first scrub pass")
    assert first["scrub_enabled"] and first["scrub_damage_found"] == 0 and first["scrub_damage"] == []
    assert first["scrub_segments_verified"] >= 1 and first["scrub_bytes_verified"] >= MiB // 2

    damaged = flip_in_sealed_segment(node, BODIES[DAMAGED])
    found = wait_for(lambda: (s := status(node))["scrub_damage_found"] and s, "the scrub to find it", 10)
    assert status_cli(node)["scrub_damage"] == found["scrub_damage"]
    [report] = found["scrub_damage"]
    assert report["segment"] == damaged.name and report["reason"] == "record checksum mismatch"
    assert report["offset"] > 0 and report["lsn"] > 0 and report["end"] > report["offset"]
    assert report["messages"] == 1
    assert report["queues"] == [
        {"vhost": "/", "queue": "q", "messages": 1, "ids": report["queues"][0]["ids"]}
    ]
    text = node.log_text()
    lines = [line for line in text.splitlines() if "scrub found damage" in line]
    assert len(lines) == 1 and "level=error" in lines[0]
    assert f"sealed segment {damaged.name} at offset {report['offset']} (LSN {report['lsn']})" in lines[0]
    assert "queue 'q' in vhost '/': 1" in lines[0]
    sample = metrics(node)
    assert sample["ottermq_scrub_damage_found_total"] == 1 and sample["ottermq_scrub_messages_at_risk"] == 1
    assert sample["ottermq_scrub_damaged_spans"] == 1 and sample["ottermq_scrub_enabled"] == 1
    assert sample["ottermq_scrub_bytes_verified_total"] >= MiB // 2
    assert sample["ottermq_scrub_last_pass_completed_timestamp_seconds"] > time.time() - 60
    # Nothing was dropped by the scrub: the reader drops the damaged message when it reaches it, alone.
    assert status(node)["messages_unreadable"] == 0

    connection = node.connect()
    channel = connection.channel()
    assert channel.queue_declare("q", passive=True).method.message_count == len(BODIES)
    got = [body for body, _ in drain_all(channel, "q")]
    assert got == BODIES[:DAMAGED] + BODIES[DAMAGED + 1 :]
    assert connection.is_open and channel.is_open
    connection.close()
    assert status(node)["messages_unreadable"] == 1
    dropped = re.search(r"message dropped: its content cannot be read: message (\d+) ", node.log_text())
    assert dropped is not None and report["queues"][0]["ids"] == [int(dropped.group(1))]
    # Later passes do not report the same damage again.
    passes = status(node)["scrub_passes"]
    wait_for(lambda: status(node)["scrub_passes"] >= passes + 2, "two more passes")
    assert node.log_text().count("scrub found damage") == 1
    # The damage stays reported while its segment is there; the message it held has left (dropped), so
    # none is at risk any more. (With nothing live left in it, the segment may be reclaimed meanwhile:
    # then the finding is forgotten with it.)
    reports = status(node)["scrub_damage"]
    if reports:
        [report] = reports
        assert report["offset"] == found["scrub_damage"][0]["offset"] and report["messages"] == 0
    else:
        assert not damaged.exists()
    assert metrics(node)["ottermq_scrub_messages_at_risk"] == 0
    assert "Traceback" not in node.log_text()
    node.stop()


_PASS = re.compile(r'msg="scrub pass completed" segments=(\d+) bytes=(\d+) seconds=([0-9.]+)')


def test_the_scrub_keeps_to_its_rate(tmp_path: Path) -> None:
    rate = 2 * MiB
    node = Node(tmp_path, log_segment_size=SEGMENT_SIZE, scrub_rate=rate, scrub_interval=3600)
    try:
        node.start()
        publish(node, [b"%06d" % i * 3000 for i in range(300)])  # ~5.4 MB: five sealed segments
        node.restart()
        match = wait_for(lambda: _PASS.search(node.log_text()), "a scrub pass", 30)
        count, size, seconds = int(match.group(1)), int(match.group(2)), float(match.group(3))
        assert count >= 3 and size >= 3 * MiB
        # Never faster than the rate (a little slack for the first chunk); slower only by what a loaded
        # machine costs.
        assert size / seconds <= rate * 1.15, (size, seconds)
        assert seconds <= size / rate * 3 + 2, (size, seconds)
        now = status(node)
        assert now["scrub_bytes_verified"] == size and now["scrub_last_pass_seconds"] == seconds
    finally:
        node.close()


def test_scrub_rate_0_turns_the_scrub_off(tmp_path: Path) -> None:
    node = Node(tmp_path, http_port=_free_port(), log_segment_size=SEGMENT_SIZE, scrub_rate=0)
    try:
        node.start()
        publish(node, BODIES)
        node.restart()
        time.sleep(1.5)
        now = status(node)
        assert now["scrub_enabled"] is False and now["scrub_passes"] == 0 and now["scrub_bytes_verified"] == 0
        assert metrics(node)["ottermq_scrub_enabled"] == 0
        assert "scrub pass" not in node.log_text()
    finally:
        node.close()


def test_a_reclaim_that_cannot_read_a_segment_is_counted_and_the_broker_keeps_serving(tmp_path: Path) -> None:
    node = Node(tmp_path, http_port=_free_port(), snapshot_interval=0.3, **FAST)
    try:
        node.start()
        publish(node, BODIES * 2)  # ~2.8 MB: two sealed segments
        wait_for(lambda: status(node)["reclaim_last_success_time"], "a first reclaim")
        oldest = segments(node)[0]
        moved = tmp_path / oldest.name
        oldest.rename(moved)  # as an operator moving files about would
        connection = node.connect()
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_purge("q")  # nothing is live: reclaim wants to delete the segment

        def nudged(key: str) -> Any:
            """`key` of the status, after a record that makes the next snapshot (and reclaim) due: the
            reclaim only goes as far as the older of the two snapshots kept, so it takes two."""
            channel.basic_publish("", "q", b"tick", PERSISTENT)
            drain_all(channel, "q")
            return status(node)[key]

        wait_for(lambda: nudged("reclaim_failures"), "the reclaim to fail")
        failed = status(node)
        assert failed["reclaim_last_error"] == f"{oldest}: No such file or directory"
        assert failed["reclaim_last_error_time"] >= failed["reclaim_last_success_time"]
        line = f"reclaiming log space failed: {oldest}: No such file or directory"
        assert line in node.log_text() and "Traceback" not in node.log_text()
        sample = metrics(node)
        assert sample["ottermq_reclaim_failures_total"] >= 1
        assert sample[f'ottermq_reclaim_last_error_info{{error="{oldest}: No such file or directory"}}'] == 1
        # The scrub noticed the segment is gone too.
        wait_for(lambda: status(node)["scrub_damage_found"], "the scrub to notice")
        assert f"scrub cannot read sealed segment {oldest.name}" in node.log_text()
        # Serving goes on.
        channel.basic_publish("", "q", b"still here", PERSISTENT)
        assert [body for body, _ in drain_all(channel, "q")] == [b"still here"]

        moved.rename(oldest)
        before = status(node)["reclaim_last_success_time"]
        wait_for(lambda: nudged("reclaim_last_success_time") != before, "a reclaim to succeed again")
        wait_for(lambda: not oldest.exists(), "the segment to be reclaimed")
        connection.close()
        node.stop()
    finally:
        node.close()


@pytest.fixture
def full_snapshot_fs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 1 MiB tmpfs mounted where the log keeps its snapshots, and a file filling it (skips when mounting
    is not permitted here)."""
    mount = tmp_path / "data" / "log" / "snapshots"
    mount.mkdir(parents=True, mode=0o700)
    (tmp_path / "data").chmod(0o700)
    (tmp_path / "data" / "log").chmod(0o700)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    filler = mount / "filler"
    try:
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(bytes(1 << 16))
                    f.flush()
            except OSError:
                pass
        yield mount, filler
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_snapshot_on_a_full_file_system_is_counted_and_the_broker_keeps_serving(
    tmp_path: Path, full_snapshot_fs: tuple[Path, Path]
) -> None:
    mount, filler = full_snapshot_fs
    node = Node(tmp_path, http_port=_free_port(), snapshot_interval=0.3, **FAST)
    try:
        node.start()
        publish(node, BODIES[:50])
        failed = wait_for(lambda: (s := status(node))["snapshot_failures"] and s, "a snapshot to fail")
        assert status_cli(node)["snapshot_last_error"] == failed["snapshot_last_error"]
        assert failed["snapshot_last_error"] == f"{mount / 'lock.mdb'}: No space left on device"
        assert failed["snapshot_last_success_time"] is None
        assert (
            f"snapshot failed: {mount / 'lock.mdb'}: No space left on device; will retry" in node.log_text()
        )
        assert "Traceback" not in node.log_text()
        sample = metrics(node)
        assert sample["ottermq_snapshot_failures_total"] >= 1
        assert sample["ottermq_snapshot_last_success_timestamp_seconds"] == 0
        # Serving goes on, publishes are confirmed.
        publish(node, BODIES[50:60])
        connection = node.connect()
        assert len(drain_all(connection.channel(), "q")) == 60
        connection.close()

        filler.unlink()  # room again: the next snapshot is written
        wait_for(lambda: status(node)["snapshot_last_success_time"], "a snapshot to succeed")
        node.stop()
        assert "final snapshot failed" not in node.log_text()
        node.start()  # and the store it made is a good one
        assert status(node)["snapshot_failures"] == 0
    finally:
        node.close()
