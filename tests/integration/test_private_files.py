"""The data directory is the owner's alone: the log holds message bodies and every user's password hash.

Strategy: a real broker started with a umask of 0 (the worst an operator's shell could hand it, so only
explicit modes can pass) publishes persistent messages through several segments, a spare and periodic
snapshots, is killed, finds a torn tail (quarantined) and a snapshot on the next run, and stops cleanly.
While it runs and after it stopped, no file, directory or socket under the data directory may be readable,
writable or enterable by group or others. A data directory that already exists open to others is served,
with one warning line naming it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from memento.record import HEAD_SIZE
from tests.integration.test_restart import Node, publish_confirmed
from tests.integration.test_torn_tail import newest_segment

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"),
]

WARNING = "is open to other local users"


def exposed(root: Path) -> list[str]:
    """Everything under `root` (and `root`) that group or others may use, with its mode."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path, log_segment_size=1 << 20, snapshot_log_bytes=400_000)
    try:
        yield n
    finally:
        n.close()


def start_with_umask(node: Node, umask: int) -> None:
    old = os.umask(umask)  # the broker process inherits it
    try:
        node.start()
    finally:
        os.umask(old)


def test_every_file_the_broker_writes_is_owner_only(node: Node) -> None:
    start_with_umask(node, 0)
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("q", durable=True)
    publish_confirmed(ch, "", "q", [b"%05d" % i + b"b" * 1000 for i in range(2500)])
    running = exposed(node.data_dir)
    assert (node.data_dir / "ctl.sock").exists()
    assert len(list((node.data_dir / "log" / "wal").glob("*.wal"))) >= 2
    node.kill()
    path, records = newest_segment(node)
    end = records[-1].position.offset + HEAD_SIZE + len(records[-1].payload)
    with path.open("r+b") as f:
        f.seek(end)
        f.write(b"\xc8\x00\x00\x00\xde\xad\xbe\xef" + b"\x01" * 40)  # a torn write: quarantined on start
    start_with_umask(node, 0)
    assert WARNING not in node.log_text()
    node.stop()
    assert list((node.data_dir / "log" / "quarantine").iterdir())
    assert (node.data_dir / "log" / "snapshots" / "data.mdb").exists()
    assert running == [], running
    assert exposed(node.data_dir) == []


def test_a_data_directory_open_to_others_is_warned_about(node: Node) -> None:
    node.data_dir.mkdir(mode=0o755)
    os.chmod(node.data_dir, 0o755)
    node.start()
    lines = [line for line in node.log_text().splitlines() if WARNING in line]
    assert len(lines) == 1 and str(node.data_dir) in lines[0] and "0755" in lines[0], node.log_text()
    assert "chmod 700" in lines[0]
    node.stop()
    os.chmod(node.data_dir, 0o700)
    node.start()
    assert WARNING not in node.log_text()
