"""`ottermq serve --salvage`: a log damaged in the middle is refused by default and served with salvage.

The broker is killed (no final snapshot), a record in the middle of its log is damaged, and the broker
is started on it: refused with a readable error that names the way out, then started with salvage, which
keeps the messages logged before the damage and says loudly what it dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from memento.snapshot import CHUNK_PREFIX
from tests.integration.test_restart import Node, drain_all, publish_confirmed, running_node
from tests.integration.test_torn_tail import newest_segment, publish_then_kill

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"
)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A broker on a fresh data directory (started), killed at teardown."""
    yield from running_node(tmp_path)


def test_damage_in_the_middle_is_refused_then_salvaged(node: Node) -> None:
    bodies = publish_then_kill(node, 10)
    path, records = newest_segment(node)
    victim = records[len(records) // 2]
    kept = [body for body in bodies if any(body in r.payload for r in records if r.lsn < victim.lsn)]
    assert 0 < len(kept) < len(bodies)
    with path.open("r+b") as f:  # one flipped byte inside a record's payload: its checksum fails
        f.seek(victim.position.offset + 30)
        byte = f.read(1)
        f.seek(victim.position.offset + 30)
        f.write(bytes([byte[0] ^ 0xFF]))

    code = node.start(expect_failure=True)
    assert code == 2
    refused = node.log_text()
    assert "ottermq: error: cannot open the log" in refused and f"LSN {victim.lsn}" in refused, refused
    assert "ottermq serve --salvage" in refused and "Traceback" not in refused

    node.settings["salvage"] = "true"  # OTTERMQ_SALVAGE, as the flag or the config file key would
    node.start()
    salvaged = node.log_text()
    assert "salvage: the log was damaged" in salvaged and f"kept_through_lsn={victim.lsn - 1}" in salvaged
    assert path.name in salvaged and "quarantine" in salvaged, salvaged
    conn = node.connect()
    assert [b for b, _ in drain_all(conn.channel(), "q")] == kept
    conn.close()

    # The damage is cut away for good: a later start needs no salvage and drops nothing more.
    del node.settings["salvage"]
    node.restart()
    assert "salvage:" not in node.log_text()
    conn = node.connect()
    assert drain_all(conn.channel(), "q") == []
    conn.close()


def test_the_flag_and_the_config_key_set_salvage(tmp_path: Path) -> None:
    def effective(*args: str, env: dict[str, str] | None = None) -> str:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTTERMQ_")}
        done = subprocess.run(
            [sys.executable, "-m", "ottermq", "serve", "--check-config", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**clean, **(env or {})},
        )
        return done.stdout

    assert "salvage = false" in effective()
    assert "salvage = true" in effective("--salvage")
    assert "salvage = true" in effective(env={"OTTERMQ_SALVAGE": "yes"})
    config = tmp_path / "ottermq.toml"
    config.write_text("salvage = true\n")
    assert "salvage = true" in effective("--config", str(config))


@pytest.mark.parametrize("damage", ["chunks", "truncated"])
def test_a_damaged_snapshot_with_the_whole_log_falls_back_to_a_full_replay(node: Node, damage: str) -> None:
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("q", durable=True)
    publish_confirmed(ch, "", "q", [b"a", b"b"])
    conn.close()
    node.stop()  # the clean stop writes the only snapshot
    if damage == "chunks":
        env = lmdb.open(str(node.data_dir / "log" / "snapshots"), max_dbs=0)
        with env.begin(write=True) as txn:  # damage every chunk of it
            for key, value in list(txn.cursor()):
                if key[:1] == CHUNK_PREFIX:
                    txn.put(key, b"\0" + value[1:])
        env.close()
    else:  # LMDB would die of SIGBUS on it: it fails the file check
        data = node.data_dir / "log" / "snapshots" / "data.mdb"
        os.truncate(data, data.stat().st_size // 2)
    # The log still holds every record from LSN 1: nothing is lost, so no salvage is needed.
    node.start()
    text = node.log_text()
    assert "level=warning" in text and "snapshot store unusable, replaying the whole log" in text, text
    assert list((node.data_dir / "log" / "quarantine").glob("snapshots.*"))
    conn = node.connect()
    # The stop was clean (Memento's MARK says so at the LSN the log ends at): a full replay is no crash,
    # so messages never delivered come back not redelivered.
    assert drain_all(conn.channel(), "q") == [(b"a", False), (b"b", False)]
    conn.close()
    node.restart()  # snapshots are written again, and read back
    assert "snapshot store unusable" not in node.log_text() and "snapshot_lsn=0 " not in node.log_text()


def test_a_newest_segment_lost_after_a_clean_stop_is_refused_then_salvaged_for_good(tmp_path: Path) -> None:
    """Losing the newest segment used to start silently (confirmed messages gone); the log's
    high-water mark and clean-stop LSN (MARK) now refuse it by name, until salvage accepts the loss."""
    node = Node(tmp_path, log_segment_size=1 << 20)  # the smallest segments: a few messages fill three
    node.start()
    try:
        conn = node.connect()
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("q", durable=True)
        publish_confirmed(ch, "", "q", [bytes([i]) * 200_000 for i in range(12)])
        conn.close()
        node.stop()
        segments = sorted((node.data_dir / "log" / "wal").glob("*.wal"))
        assert len(segments) >= 3
        lost = segments[-1]
        lost.unlink()

        assert node.start(expect_failure=True) == 2
        refused = node.log_text()
        assert lost.name in refused and "stopped cleanly at LSN" in refused, refused
        assert "ottermq serve --salvage" in refused and "Traceback" not in refused

        node.settings["salvage"] = "true"
        node.start()
        salvaged = node.log_text()
        assert "level=error" in salvaged and f"salvage: {lost.name}" in salvaged, salvaged
        node.stop()

        # The cut is permanent: MARK was rewritten, so the next start needs no salvage.
        del node.settings["salvage"]
        node.start()
        assert "salvage" not in node.log_text() and "level=error" not in node.log_text(), node.log_text()
        node.stop()
    finally:
        node.close()
