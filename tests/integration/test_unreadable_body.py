"""A confirmed message whose record was damaged on disk after it was written: reading it back fails.

The broker drops that one message with an error line naming the queue, the message and where it lay,
counts it (`ctl status`), and goes on: the consumer's connection stays open and every other message is
delivered. Before, the first consumer to reach it lost its whole connection (541 INTERNAL_ERROR).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_restart import PERSISTENT, Node, drain_all

# 1 MiB segments and ~1.4 MB of messages: the damaged one lies in a sealed segment, which a start does
# not read through (the newest segment's damage is found at start, and refused: another test's matter).
SEGMENT_SIZE = 1 << 20
BODIES = [b"%06d" % i * 333 for i in range(700)]  # each one findable on disk
DAMAGED = 3


def _damage(data_dir: Path, body: bytes) -> None:
    """Flip one byte in the middle of `body` where it lies in a segment (the record's CRC then fails)."""
    segments = sorted((data_dir / "log" / "wal").glob("*.wal"))
    assert len(segments) > 1
    for segment in segments[:-1]:
        raw = bytearray(segment.read_bytes())
        at = raw.find(body)
        if at >= 0:
            raw[at + len(body) // 2] ^= 0xFF
            segment.write_bytes(bytes(raw))
            return
    raise AssertionError("the message's body is not in a sealed segment")


def _status(data_dir: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "ottermq", "ctl", "--data-dir", str(data_dir), "--json", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status: dict[str, object] = json.loads(out.stdout)
    return status


@pytest.mark.parametrize("how", ["get", "consume"])
def test_a_message_that_cannot_be_read_is_dropped_and_nothing_else_is_disturbed(
    tmp_path: Path, how: str
) -> None:
    node = Node(tmp_path, log_segment_size=SEGMENT_SIZE)
    node.start()
    try:
        connection = node.connect()
        channel = connection.channel()
        channel.queue_declare("q", durable=True)
        channel.confirm_delivery()
        for body in BODIES:
            channel.basic_publish("", "q", body, PERSISTENT)
        connection.close()
        node.stop()  # a clean stop: the next start reads contents back from the log, not from memory
        _damage(node.data_dir, BODIES[DAMAGED])
        node.start()

        connection = node.connect()
        channel = connection.channel()
        if how == "get":
            got = [body for body, _ in drain_all(channel, "q")]
        else:
            got = []
            channel.basic_qos(prefetch_count=50)
            for _method, _props, body in channel.consume("q", inactivity_timeout=3):
                if body is None:
                    break
                got.append(body)
                channel.basic_ack(_method.delivery_tag)
            channel.cancel()
        assert got == BODIES[:DAMAGED] + BODIES[DAMAGED + 1 :]
        assert connection.is_open and channel.is_open
        assert channel.queue_declare("q", passive=True).method.message_count == 0
        connection.close()

        log = node.log_text()
        assert "message dropped: its content cannot be read" in log and "queue=q" in log
        assert _status(node.data_dir)["messages_unreadable"] == 1
        # The drop was logged as a removal: after a restart the damaged message does not come back.
        node.restart()
        connection = node.connect()
        assert drain_all(connection.channel(), "q") == []
        connection.close()
    finally:
        node.close()
