"""Replay = live: a broker rebuilt from the log (with or without a snapshot) equals the one that wrote it.

The live broker writes through a real MementoJournal into a real log (flushed with `log.sync()`, no event
loop needed); the rebuilt one is made by `DurableStore.recover`, the code `ottermq serve` runs at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memento.log import Log
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.message import Message
from ottermq.broker.vhost import VHost
from ottermq.store.codec import RECORD_TYPES, unpack_loc
from ottermq.store.recovery import RUNNING_MARK
from ottermq.store.snapshot import decode_snapshot, encode_snapshot, index_of
from ottermq.store.store import LOG_DIR, DurableStore
from tests.unit.broker.domain_fakes import FakeConsumer
from tests.unit.store.brokers import live_broker as logging_broker
from tests.unit.store.brokers import log_contents

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))


def message(exchange: str, key: str, body: bytes, persistent: bool = True) -> Message:
    return Message(exchange, key, PERSISTENT if persistent else b"\x00\x00", body)


def publish(vhost: VHost, exchange: str, key: str, body: bytes, persistent: bool = True) -> None:
    """What the channel does for one publish."""
    msg = message(exchange, key, body, persistent)
    vhost.publish_now(msg, vhost.route(exchange, key, msg))


def projection(broker: Broker) -> dict[str, Any]:
    """Durable entities, and per durable queue its logged messages in order with their content."""
    state: dict[str, Any] = {"events": sorted(map(repr, broker.durable_events()))}
    contents = broker.contents
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            if queue.durable:
                messages = [(e.msg_id, contents.get(e.msg_id)) for e in queue.logged_entries()]
                state[queue.name] = [(i, m.exchange, m.routing_key, m.body) for i, m in messages]
    return state


def live_broker(tmp_path: Path) -> tuple[Broker, Log]:
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    return logging_broker(log), log


def workload(broker: Broker, log: Log, snapshot_after: int | None) -> None:
    vhost = broker.vhosts["/"]
    vhost.declare_exchange("fan", "fanout", durable=True)
    vhost.declare_exchange("topic", "topic", durable=True)
    for name in ("a", "b", "c"):
        vhost.declare_queue(name, durable=True)
        vhost.bind_queue(name, "fan")
    vhost.declare_queue("transient-q")
    vhost.bind_queue("transient-q", "fan")
    vhost.bind_exchange("fan", "topic", "t.#")
    vhost.bind_queue("c", "topic", "c.*")
    for i in range(40):
        publish(vhost, "fan", "", b"fan-%d" % i)
        publish(vhost, "topic", "c.x", b"c-%d" % i)
        publish(vhost, "topic", "t.y", b"t-%d" % i, persistent=i % 2 == 0)
        if snapshot_after is not None and i == snapshot_after:
            log.sync()
            save_snapshot(broker, log)
    consumer = FakeConsumer("k", credit=30)
    queue_a = vhost.queues["a"]
    queue_a.add_consumer(consumer)
    queue_a.dispatch()
    queue_a.settle(consumer.received[:10])
    queue_a.requeue(consumer.received[10:20])
    queue_a.settle(consumer.received[20:25], "reject")
    vhost.purge_queue("b")
    publish(vhost, "fan", "", b"after-purge")
    # A transaction: two publishes and an ack in one record.
    vhost.begin_tx()
    queue_a.settle(consumer.received[25:27])
    queue_c = vhost.queues["c"]
    _, placed = vhost.end_tx([(message("", "c", b"tx-1"), [queue_c]), (message("", "c", b"tx-2"), [queue_c])])
    for entries in placed:
        for queue, entry in entries:
            queue.enqueue(entry)
    vhost.declare_queue("doomed", durable=True)
    publish(vhost, "", "doomed", b"gone")
    vhost.delete_queue("doomed")
    log.sync()


def save_snapshot(broker: Broker, log: Log) -> None:
    indexes = [
        index_of(v.name, q.name, q.logged_entries(), broker.contents.locations)
        for v in broker.vhosts.values()
        for q in v.queues.values()
        if q.durable
    ]
    log.save_snapshot(log.end_lsn, encode_snapshot(broker.durable_events(), indexes, clean=False))


def recovered(tmp_path: Path) -> tuple[Broker, DurableStore]:
    store = DurableStore.open(tmp_path)
    broker = store.new_broker()
    store.recover(broker)
    return broker, store


@pytest.mark.parametrize("snapshot_after", [None, 0, 20, 39], ids=lambda v: f"snapshot@{v}")
def test_replay_rebuilds_the_live_state(tmp_path: Path, snapshot_after: int | None) -> None:
    broker, log = live_broker(tmp_path)
    workload(broker, log, snapshot_after)
    expected = projection(broker)
    log.close()
    # The broker died: its running mark is left (the log itself closed cleanly here, so Memento's MARK
    # alone would call the stop clean).
    (tmp_path / LOG_DIR / RUNNING_MARK).touch()
    rebuilt, store = recovered(tmp_path)
    try:
        assert projection(rebuilt) == expected
        assert "transient-q" not in rebuilt.vhosts["/"].queues
        assert store.recovery.crashed
        queue_c = rebuilt.vhosts["/"].queues["c"]
        entry = queue_c.get()
        assert entry is not None and entry.redelivered
        assert queue_c.content_of(entry).body == b"fan-0"
    finally:
        store.close()


def test_recovered_messages_hold_no_content_until_used(tmp_path: Path) -> None:
    broker, log = live_broker(tmp_path)
    workload(broker, log, None)
    log.close()
    rebuilt, store = recovered(tmp_path)
    try:
        entries = rebuilt.vhosts["/"].queues["a"].logged_entries()
        contents = log_contents(rebuilt)
        assert entries and contents.resident_bytes == 0  # every content is left in the log
        content = contents.get(entries[0].msg_id)  # read back from the log, and kept
        assert content.body.startswith(b"fan-") and contents.resident_bytes > 0
        contents.resident_limit = 0
        contents.evict()
        assert contents.resident_bytes == 0 and entries[0].msg_id in contents
        again = contents.get(entries[0].msg_id)
        assert again.body == content.body and again.persistent and again.routing_key == ""
    finally:
        store.close()


def test_snapshot_round_trip_keeps_order_locations_and_flags(tmp_path: Path) -> None:
    broker, log = live_broker(tmp_path)
    workload(broker, log, None)
    queue = broker.vhosts["/"].queues["a"]
    entries = queue.logged_entries()
    entries[-1].redelivered = True
    locations = broker.contents.locations
    index = index_of("/", "a", entries, locations)
    state = decode_snapshot(encode_snapshot(broker.durable_events(), [index], True))
    assert state.clean
    assert sorted(map(repr, state.events)) == sorted(map(repr, broker.durable_events()))
    (index,) = state.queues
    assert list(index.ids) == [e.msg_id for e in entries]
    assert list(index.flags) == [int(e.redelivered) for e in entries]
    assert index.flags[-1] == 1 and 0 in index.flags
    assert [(s, o, i) for s, o, i in zip(index.segments, index.offsets, index.indexes, strict=True)] == [
        unpack_loc(locations[e.msg_id]) for e in entries
    ]
    log.close()


def test_a_clean_snapshot_with_nothing_after_it_is_not_a_crash(tmp_path: Path) -> None:
    broker, log = live_broker(tmp_path)
    workload(broker, log, None)
    indexes = [
        index_of(v.name, q.name, q.logged_entries(), broker.contents.locations)
        for v in broker.vhosts.values()
        for q in v.queues.values()
        if q.durable
    ]
    log.save_snapshot(log.end_lsn, encode_snapshot(broker.durable_events(), indexes, clean=True))
    expected = projection(broker)
    log.close()
    rebuilt, store = recovered(tmp_path)
    try:
        assert not store.recovery.crashed and store.recovery.replayed == 0
        assert projection(rebuilt) == expected
        entry = rebuilt.vhosts["/"].queues["c"].get()
        assert entry is not None and not entry.redelivered
    finally:
        store.close()
