"""Damage on disk: a torn tail is repaired and reported, damage in the middle is refused by name.

The broker is killed (no final snapshot), then the newest segment of its data directory is damaged the way
a crash mid-write or a bad disk would, and the broker is started on it again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from memento.reader import records_in
from memento.record import HEAD_SIZE, Record
from memento.segment import parse_name
from tests.integration.test_restart import Node, drain_all, publish_confirmed, running_node

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"
)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A broker on a fresh data directory (started), killed at teardown."""
    yield from running_node(tmp_path)


def newest_segment(node: Node) -> tuple[Path, list[Record]]:
    """The newest segment file and its records."""
    wal = node.data_dir / "log" / "wal"
    path = max((p for p in wal.iterdir() if parse_name(p.name)), key=lambda p: parse_name(p.name) or (0, 0))
    seq, base = parse_name(path.name) or (0, 0)
    return path, list(records_in(path.read_bytes(), seq, base, path.name))


def publish_then_kill(node: Node, count: int) -> list[bytes]:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("q", durable=True)
    bodies = [b"msg-%03d" % i for i in range(count)]
    publish_confirmed(ch, "", "q", bodies)
    node.kill()
    return bodies


def test_garbage_after_the_last_record_is_quarantined_and_nothing_is_lost(node: Node) -> None:
    bodies = publish_then_kill(node, 10)
    path, records = newest_segment(node)
    last = records[-1]
    end = last.position.offset + HEAD_SIZE + len(last.payload)
    with path.open("r+b") as f:
        # A record head that claims 200 bytes and a checksum that cannot match: a write torn by the crash.
        f.seek(end)
        f.write(b"\xc8\x00\x00\x00\xde\xad\xbe\xef" + b"\x01" * 40)
    node.start()
    log = node.log_text()
    assert "recovery:" in log and "quarantine" in log, log
    conn = node.connect()
    assert [b for b, _ in drain_all(conn.channel(), "q")] == bodies
    conn.close()


def test_a_torn_last_record_is_dropped_and_every_earlier_message_kept(node: Node) -> None:
    bodies = publish_then_kill(node, 10)
    path, records = newest_segment(node)
    last = records[-1]
    with path.open("r+b") as f:
        # Half of the last record never reached the disk.
        f.seek(last.position.offset + HEAD_SIZE + len(last.payload) // 2)
        f.write(b"\x00" * (len(last.payload) // 2 + 8))
    node.start()
    assert "recovery:" in node.log_text()
    conn = node.connect()
    assert [b for b, _ in drain_all(conn.channel(), "q")] == bodies[:-1]
    conn.close()


def test_corruption_in_the_middle_is_refused_with_segment_and_lsn(node: Node) -> None:
    publish_then_kill(node, 10)
    path, records = newest_segment(node)
    victim = records[len(records) // 2]
    with path.open("r+b") as f:
        f.seek(victim.position.offset + 30)
        byte = f.read(1)
        f.seek(victim.position.offset + 30)
        f.write(bytes([byte[0] ^ 0xFF]))
    code = node.start(expect_failure=True)
    assert code not in (None, 0)
    log = node.log_text()
    assert "ottermq: error: cannot" in log, log
    assert path.name in log, log
    assert f"LSN {victim.lsn}" in log or f"lsn {victim.lsn}" in log.lower(), log
    assert "Traceback" not in log
