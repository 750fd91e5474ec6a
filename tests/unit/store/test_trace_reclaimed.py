"""`memento trace` where the log no longer holds a message's publish record: compaction copied it forward
and deleted the original's segment. The trace must say so and take the queues from the snapshot, not
from the copy's list of queues (removals before the snapshot may be gone with the segment).

The log is written with Memento and the store's codec directly (the broker's own snapshots and reclaims
run on timers; here each step is placed): a publish to two queues, removed from one of them, filler,
a snapshot, a reclaim that copies the live publish forward, a second snapshot and a reclaim that deletes
the first segment, then an ack after the snapshot.
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path

from typer.testing import CliRunner

from memento.cli import app
from memento.log import Log
from memento.record import RecordPosition
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.events import MessagePublished, MessagesRemoved, QueueDeclared, message_id
from ottermq.store.codec import RECORD_TYPES, encode
from ottermq.store.snapshot import QueueIndex, encode_snapshot

PUBLISHED = 1_700_000_000_123


def publish(log: Log, mid: str, queues: tuple[str, ...]) -> int:
    props = encode_properties(BasicProperties(delivery_mode=2, message_id=mid))
    return log.append(*encode(MessagePublished("/", queues, "ex", "rk", props, b"b" * 300, PUBLISHED)))


def state(msg_id: int, position: RecordPosition) -> bytes:
    entities = [QueueDeclared("/", name, True, False, False, {}) for name in ("a", "b")]
    index = QueueIndex(
        "/",
        "b",
        array("Q", [msg_id]),
        array("I", [position.segment]),
        array("I", [position.offset]),
        array("I", [0]),
        array("B", [0]),
        array("Q", [0]),
        array("i", [300]),
    )
    return encode_snapshot(entities, [index], clean=False)


def make_log(path: Path) -> tuple[int, int, int]:
    """(LSN the kept message was published at, LSN of the gone one, LSN of the second snapshot)."""
    with Log.open(path, segment_size=4096, registry=RECORD_TYPES) as log:
        for name in ("a", "b"):
            log.append(*encode(QueueDeclared("/", name, True, False, False, {})))
        gone = publish(log, "gone", ("a",))
        kept = publish(log, "kept", ("a", "b"))
        log.sync()
        position = log.last_position
        keep_id = message_id(kept)
        log.append(*encode(MessagesRemoved("/", "a", (keep_id, message_id(gone)), "ack")))
        for i in range(40):
            lsn = publish(log, f"filler-{i}", ("a",))
            log.append(*encode(MessagesRemoved("/", "a", (message_id(lsn),), "ack")))
        log.sync()
        first = log.end_lsn
        log.save_snapshot(first, state(keep_id, position))
        moved = log.reclaim(first, lambda p: p == position).relocated
        position = moved[position]
        for i in range(20):
            lsn = publish(log, f"later-{i}", ("a",))
            log.append(*encode(MessagesRemoved("/", "a", (message_id(lsn),), "ack")))
        log.sync()
        second = log.end_lsn
        log.save_snapshot(second, state(keep_id, position))
        deleted = log.reclaim(first, lambda p: p == position).deleted
        assert deleted == ()  # the oldest snapshot kept does not cover the copy yet
        assert log.reclaim(second, lambda p: p == position).deleted  # (as after a third snapshot)
        log.append(*encode(MessagesRemoved("/", "b", (keep_id,), "ack")))
        log.sync()
    return kept, gone, second


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


def test_a_reclaimed_publish_is_told_from_its_copy_and_the_snapshot(tmp_path: Path) -> None:
    kept, gone, second = make_log(tmp_path)
    code, text = run("trace", "kept", str(tmp_path))
    assert code == 0, text
    assert "its record was reclaimed, a compaction copy at LSN" in text
    assert f"snapshot at LSN {second}: in queue 'b'" in text
    assert "removed from 'b': ack" in text and "now: in no queue" in text
    # The ack from 'a' happened before the snapshot, in a segment now deleted: not invented.
    assert "removed from 'a'" not in text
    code, out = run("trace", "--json", "--lsn", str(kept), str(tmp_path))
    docs = [json.loads(line) for line in out.splitlines()]
    (published,) = [d for d in docs if d["event"] == "published"]
    assert published["lsn"] == kept and published["reclaimed"] and published["copy_lsn"] > kept
    assert [d["queue"] for d in docs if d["event"] == "removed"] == ["b"]
    code, text = run("trace", "gone", str(tmp_path))
    assert code == 1
    assert "were reclaimed, so a message that had left every queue by then leaves no trace" in text
    assert gone < kept
