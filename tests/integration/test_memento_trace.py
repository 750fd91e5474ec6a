"""`memento trace` and `memento replay` as an SRE uses them, on a log a real broker wrote.

One data directory for the module (1 MiB segments, so several exist): messages with message-ids meet
each fate (ack, reject dead-lettered, expiry dead-lettered, maxlen, purge, queue deleted, a transaction),
a consumer keeps an old big message unacked (so its segment stays), a clean stop snapshots in the middle,
more traffic, and a second clean stop keeps two snapshots. The trace of each message must name its fate,
LSNs and times; replay must name the queue that holds the old segment and pick the older snapshot for an
LSN between the two.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
from typer.testing import CliRunner

from memento.cli import app
from tests.integration.test_restart import Node, barrier

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker process of our own"
)

BIG = 600 * 1024  # over half a 1 MiB segment: never compacted (live bytes above the sparse threshold)
FILLER = 64 * 1024


def persistent(message_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, message_id=message_id)


@dataclass
class Data:
    dir: Path
    first_snapshot: int
    second_snapshot: int
    between: int  # an LSN between the two snapshots


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def trace(data: Data, *args: str) -> tuple[str, list[dict[str, Any]]]:
    code, text, stderr = run("trace", *args, str(data.dir))
    assert code == 0, (code, text, stderr)
    code, lines, stderr = run("trace", "--json", *args, str(data.dir))
    assert code == 0, stderr
    return text, [json.loads(line) for line in lines.splitlines()]


def snapshot_lsns(data_dir: Path) -> list[int]:
    _code, out, _ = run("inspect", "--json", str(data_dir))
    return [s["lsn"] for s in json.loads(out)["snapshots"]]


def fill(ch: Any, count: int) -> None:
    """Big acked messages: log volume that fills segments and holds nothing."""
    for i in range(count):
        ch.basic_publish("", "bulk", os.urandom(FILLER), persistent(f"fill-{time.monotonic_ns()}-{i}"))
    while True:
        method, _, _ = ch.basic_get("bulk")
        if method is None:
            break
        ch.basic_ack(method.delivery_tag)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    # 1 MiB segments, no periodic snapshot.
    settings = {"log_segment_size": 1 << 20, "snapshot_interval": 3600, "snapshot_log_bytes": 1 << 40}
    node = Node(tmp_path_factory.mktemp("memento-trace"), **settings)
    node.start()
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("dlx", "fanout", durable=True)
    ch.queue_declare("dlq", durable=True)
    ch.queue_bind("dlq", "dlx")
    ch.queue_declare("held", durable=True)
    ch.queue_declare("bulk", durable=True)
    ch.queue_declare("work", durable=True, arguments={"x-dead-letter-exchange": "dlx"})
    ch.queue_declare("ttlq", durable=True, arguments={"x-dead-letter-exchange": "dlx", "x-message-ttl": 50})
    ch.queue_declare("capped", durable=True, arguments={"x-max-length": 1})
    ch.queue_declare("purged", durable=True)
    ch.queue_declare("doomed", durable=True)
    # The old message a consumer holds unacked: it keeps its segment.
    ch.basic_publish("", "held", os.urandom(BIG), persistent("m-held"))
    holder = conn.channel()
    method, _, _ = holder.basic_get("held")
    assert method is not None
    fill(ch, 20)
    for name in ("m-ack", "m-reject"):
        ch.basic_publish("", "work", b"body of " + name.encode(), persistent(name))
    method, props, _ = ch.basic_get("work")
    assert props.message_id == "m-ack"
    ch.basic_ack(method.delivery_tag)
    method, props, _ = ch.basic_get("work")
    assert props.message_id == "m-reject"
    ch.basic_reject(method.delivery_tag, requeue=False)
    method, props, _ = ch.basic_get("dlq")
    assert props.message_id == "m-reject"
    ch.basic_ack(method.delivery_tag)
    ch.basic_publish("", "capped", b"first", persistent("m-max-1"))
    ch.basic_publish("", "capped", b"second", persistent("m-max-2"))
    ch.basic_publish("", "purged", b"purge me", persistent("m-purge"))
    ch.queue_purge("purged")
    ch.basic_publish("", "doomed", b"deleted with its queue", persistent("m-deleted"))
    ch.queue_delete("doomed")
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish("", "work", b"in a transaction", persistent("m-tx"))
    tx.tx_commit()
    barrier(ch)
    conn.close()
    node.restart()  # clean stop: the first snapshot (the unacked message is requeued, not removed)
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "ttlq", b"expires", persistent("m-expire"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # expiry dead-letters it to dlq
        ch.basic_get("ttlq")
        if ch.queue_declare("dlq", passive=True).method.message_count:
            break
        time.sleep(0.05)
    fill(ch, 20)
    barrier(ch)
    conn.close()
    node.stop()  # the second snapshot; both are kept
    first, second = snapshot_lsns(node.data_dir)
    node.start()  # a third run only to get an LSN between: publish, note it, stop without a snapshot
    conn = node.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "work", b"after the second snapshot", persistent("m-late"))
    barrier(ch)
    conn.close()
    node.kill()
    try:
        yield Data(node.data_dir, first, second, (first + second) // 2)
    finally:
        node.close()


def events(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["event"] == kind]


def test_acked_message(data: Data) -> None:
    text, docs = trace(data, "m-ack")
    (published,) = events(docs, "published")
    assert published["queues"] == ["work"] and published["exchange"] == ""
    assert published["routing_key"] == "work"
    assert published["time"].endswith("UTC") and published["message_id"] == "m-ack"
    (removed,) = events(docs, "removed")
    assert removed["queue"] == "work" and removed["reason"] == "ack" and removed["lsn"] > published["lsn"]
    assert events(docs, "state")[-1]["queues"] == []
    assert "removed from 'work': ack" in text and "now: in no queue" in text
    # The same message by the LSN of its publish record.
    _text, lsn_docs = trace(data, "--lsn", str(published["lsn"]))
    assert [d for d in lsn_docs if d["event"] != "trace"] == [d for d in docs if d["event"] != "trace"]


def test_rejected_message_is_dead_lettered_and_its_copy_acked(data: Data) -> None:
    text, docs = trace(data, "m-reject")
    original, copy = events(docs, "published")
    assert original["queues"] == ["work"]
    assert copy["dead_letter_of"] == original["message"] and copy["dead_lettered_from"] == "work"
    assert copy["death_reason"] == "rejected" and copy["exchange"] == "dlx" and copy["queues"] == ["dlq"]
    removed = events(docs, "removed")
    assert [(r["queue"], r["reason"]) for r in removed] == [("work", "reject"), ("dlq", "ack")]
    assert removed[0]["dead_lettered_to"] == {
        "exchange": "dlx",
        "routing_key": "work",
        "queues": ["dlq"],
        "message": copy["message"],
    }
    assert "dead-lettered to exchange 'dlx' -> queue 'dlq' as message" in text


def test_expired_message_is_dead_lettered_and_still_queued(data: Data) -> None:
    text, docs = trace(data, "m-expire")
    original, copy = events(docs, "published")
    assert original["queues"] == ["ttlq"]
    (removed,) = events(docs, "removed")
    assert removed["queue"] == "ttlq" and removed["reason"] == "expired"
    assert removed["dead_lettered_to"]["queues"] == ["dlq"] and copy["death_reason"] == "expired"
    states = events(docs, "state")
    assert states[0]["queues"] == [] and states[1]["queues"] == ["dlq"]
    assert "now: in queue 'dlq'" in text


def test_maxlen_purge_queue_deleted_and_transaction(data: Data) -> None:
    _, docs = trace(data, "m-max-1")
    assert [(r["queue"], r["reason"]) for r in events(docs, "removed")] == [("capped", "maxlen")]
    _, docs = trace(data, "m-max-2")
    assert events(docs, "removed") == [] and events(docs, "state")[0]["queues"] == ["capped"]
    _, docs = trace(data, "m-purge")
    assert [(r["queue"], r["reason"]) for r in events(docs, "removed")] == [("purged", "purge")]
    text, docs = trace(data, "m-deleted")
    assert [(r["queue"], r["reason"]) for r in events(docs, "removed")] == [("doomed", "queue deleted")]
    text, docs = trace(data, "m-tx")
    (published,) = events(docs, "published")
    assert published["tx_lsn"] == published["lsn"] and "in a transaction committed at LSN" in text


def test_snapshot_covering_the_publish_is_shown(data: Data) -> None:
    text, docs = trace(data, "m-held")
    (published,) = events(docs, "published")
    assert published["lsn"] < data.first_snapshot
    (snap,) = events(docs, "snapshot")
    assert snap["lsn"] == data.second_snapshot and snap["queues"] == ["held"]
    assert f"snapshot at LSN {data.second_snapshot}: in queue 'held'" in text


def test_unknown_message_id(data: Data) -> None:
    code, text, _ = run("trace", "no-such-id", str(data.dir))
    assert code == 1 and "no record in LSN 1.." in text
    code, _, stderr = run("trace", str(data.dir))
    assert code == 4 and "give ID DIR" in stderr


def test_replay_names_what_holds_each_segment(data: Data) -> None:
    code, out, stderr = run("replay", "--decoder", "ottermq", str(data.dir))
    assert code == 0, stderr
    doc = json.loads(out)
    queues = doc["vhosts"]["/"]["queues"]
    assert queues["held"]["messages"] == 1 and queues["held"]["bytes"] == BIG
    assert queues["held"]["redelivered"] == 1  # the consumer had it when the broker stopped
    holders = {h["holder"]: h for h in doc["holders"]}
    assert doc["holders"][0]["holder"] == "queue 'held'"  # the most bytes
    assert holders["queue 'held'"]["oldest_time_us"] and holders["queue 'dlq'"]["records"] == 1
    segments = doc["segments"]
    assert len(segments) >= 3
    first = segments[0]
    assert first["status"] == "held"
    assert first["reason"].startswith("held by queue 'held' (1 record, oldest LSN")
    statuses = [s["status"] for s in segments]
    # Newer than the first snapshot (the oldest kept), nothing live: only the snapshots keep it.
    assert statuses[-1] == "active" and "held by the snapshot" in statuses
    code, text, _ = run("replay", "--decoder", "ottermq", "--text", str(data.dir))
    assert code == 0 and "queue 'held': 1 record," in text and "held by queue 'held'" in text


def test_replay_to_an_lsn_starts_from_the_newest_snapshot_before_it(data: Data) -> None:
    code, out, stderr = run("replay", "--decoder", "ottermq", "--to-lsn", str(data.between), str(data.dir))
    assert code == 0, stderr
    assert json.loads(out)["snapshot_lsn"] == data.first_snapshot
    assert f"replaying from the snapshot at LSN {data.first_snapshot}, the newest at or before" in stderr
    second = str(data.second_snapshot)
    code, out, stderr = run("replay", "--decoder", "ottermq", "--to-lsn", second, str(data.dir))
    assert json.loads(out)["snapshot_lsn"] == data.second_snapshot
    assert f"replaying from the snapshot at LSN {data.second_snapshot}" in stderr
