"""Start-up with a backlog: snapshot indexes restored in bulk, and the live-record set reclamation asks.

A snapshot's queue index comes back through `replay.load_queues` as queue entries whose contents stay in
the log (the content store holds their ids and locations only); these tests check what a consumer then
sees (order, redelivered flags, contents read back from the log), that queues with features still go
through their own `restore_index`, and that `LiveRecords` answers like a set.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from memento.log import Log
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.message import Message
from ottermq.store.codec import RECORD_TYPES, pack_loc, record_key
from ottermq.store.live import LiveRecords
from ottermq.store.snapshot import encode_snapshot
from ottermq.store.store import LOG_DIR, DurableStore, StoreOptions
from tests.unit.broker.domain_fakes import FakeConsumer
from tests.unit.store.brokers import live_broker, log_contents, snapshot_indexes

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))


def publish(broker: Broker, queue: str, body: bytes) -> None:
    vhost = broker.vhosts["/"]
    message = Message("", queue, PERSISTENT, body)
    vhost.publish_now(message, vhost.route("", queue, message))


def snapshot_and_close(broker: Broker, log: Log) -> None:
    """What a clean stop leaves: a clean snapshot at the end of the log."""
    log.sync()
    state = encode_snapshot(broker.durable_events(), snapshot_indexes(broker), clean=True)
    log.save_snapshot(log.end_lsn, state)
    log.close()


def recovered(tmp_path: Path) -> tuple[Broker, DurableStore]:
    store = DurableStore.open(tmp_path)
    broker = store.new_broker()
    store.recover(broker)
    return broker, store


def test_a_restored_backlog_is_delivered_in_order_with_its_flags_and_contents(tmp_path: Path) -> None:
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    broker = live_broker(log)
    vhost = broker.vhosts["/"]
    vhost.declare_queue("backlog", durable=True)
    for i in range(300):
        publish(broker, "backlog", b"m-%d" % i)
    queue = vhost.queues["backlog"]
    # Deliver the first ten and hand five back: they are redelivered=True in the snapshot.
    consumer = FakeConsumer("c", credit=10)
    queue.add_consumer(consumer)
    queue.dispatch()
    queue.remove_consumer(consumer)
    queue.requeue(consumer.received[:5])
    queue.settle(consumer.received[5:])
    snapshot_and_close(broker, log)

    rebuilt, store = recovered(tmp_path)
    try:
        assert not store.recovery.crashed and store.recovery.messages == 295
        restored = rebuilt.vhosts["/"].queues["backlog"]
        assert restored.ready_count == 295 and restored.logged_count == 295
        entries = restored.logged_entries()
        contents = log_contents(rebuilt)
        # Every content is held by id, none in memory until a delivery asks for it.
        assert len(contents) == 295 and all(e.msg_id in contents for e in entries)
        assert contents.resident_bytes == 0
        assert [e.seq for e in entries] == list(range(1, 296))
        got = []
        while (entry := restored.get()) is not None:
            content = restored.content_of(entry)
            got.append((content.body, entry.redelivered, content.routing_key))
        expected_bodies = [b"m-%d" % i for i in (*range(5), *range(10, 300))]
        assert [body for body, _, _ in got] == expected_bodies
        assert [again for _, again, _ in got] == [True] * 5 + [False] * 290
        assert {key for _, _, key in got} == {"backlog"}
        # A message published after the restart queues behind the restored ones.
        restored.requeue(entries[:2])
        publish(rebuilt, "backlog", b"new")
        heads = [restored.get() for _ in range(3)]
        assert [restored.content_of(e).body for e in heads if e is not None] == [b"m-0", b"m-1", b"new"]
    finally:
        store.close()


def test_queues_with_features_restore_with_their_parts(tmp_path: Path) -> None:
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    broker = live_broker(log)
    broker.vhosts["/"].declare_queue("ttl", durable=True, arguments={"x-message-ttl": 60_000})
    for i in range(20):
        publish(broker, "ttl", b"t-%d" % i)
    snapshot_and_close(broker, log)

    rebuilt, store = recovered(tmp_path)
    try:
        queue = rebuilt.vhosts["/"].queues["ttl"]
        assert queue.features is not None and queue.features.message_ttl == 60_000
        entries = queue.logged_entries()
        assert len(entries) == 20 and all(e.deadline > 0 for e in entries)
        assert [queue.content_of(e).body for e in entries] == [b"t-%d" % i for i in range(20)]
    finally:
        store.close()


def test_live_records_answer_like_a_set_in_any_order() -> None:
    rng = random.Random(7)
    keys = {pack_loc(rng.randrange(1, 9000), rng.randrange(1 << 26)) for _ in range(2000)}
    # Several publishes of one record (a transaction) share its key.
    locs = [key | index for key in keys for index in range(rng.randrange(1, 3))]
    rng.shuffle(locs)
    live = LiveRecords(record_key(loc) for loc in locs)
    assert len(live) == len(locs)
    others = {pack_loc(rng.randrange(1, 9000), rng.randrange(1 << 26)) for _ in range(2000)} - keys
    asked = sorted([*keys, *others])
    # Ascending (how reclamation asks), then repeated, then shuffled.
    assert [key in live for key in asked] == [key in keys for key in asked]
    assert [key in live for key in asked] == [key in keys for key in asked]
    rng.shuffle(asked)
    assert [key in live for key in asked] == [key in keys for key in asked]
    assert "x" not in live
    assert pack_loc(1, 0) not in LiveRecords([])


def test_reclaim_keeps_every_live_message_and_frees_acked_segments(tmp_path: Path) -> None:
    async def run() -> tuple[int, int]:
        options = StoreOptions(segment_size=1 << 20, check_interval=3600)
        store = DurableStore.open(tmp_path, options)
        broker = store.new_broker()
        store.recover(broker)
        await store.start()
        vhost = broker.vhosts["/"]
        vhost.declare_queue("q", durable=True)
        for i in range(3000):
            publish(broker, "q", b"%d-" % i + b"x" * 1000)
        queue = vhost.queues["q"]
        consumer = FakeConsumer("c", credit=3000)
        queue.add_consumer(consumer)
        queue.dispatch()
        # Ack all but every 50th message: most old segments are dead, the rest sparse.
        queue.settle([e for i, e in enumerate(consumer.received) if i % 50])
        queue.requeue([e for i, e in enumerate(consumer.received) if not i % 50])
        queue.remove_consumer(consumer)
        await asyncio.sleep(0)  # the removals are flushed at the end of the turn
        before = wal_names()
        # Each snapshot reclaims: sparse segments are copied forward, and deleted once a snapshot older
        # than the newest (the fallback) covers the copies.
        for round_ in range(4):
            vhost.declare_queue(f"tick-{round_}", durable=True)
            await store.snapshot(clean=False)
        await store.stop()
        return len(before - wal_names()), queue.logged_count

    def wal_names() -> set[str]:
        return {path.name for path in (tmp_path / LOG_DIR / "wal").iterdir()}

    freed, remaining = asyncio.run(run())
    assert freed >= 1 and remaining == 60
    rebuilt, store = recovered(tmp_path)
    try:
        queue = rebuilt.vhosts["/"].queues["q"]
        bodies = [queue.content_of(entry).body for entry in iter(queue.get, None)]
        assert [body.split(b"-")[0] for body in bodies] == [b"%d" % i for i in range(0, 3000, 50)]
    finally:
        store.close()
