"""TTL deadlines across a restart: the publish time in the log record, the deadline column of a snapshot.

A message's deadline is publish time + the smaller of its `expiration` and the queue's x-message-ttl,
whether or not the broker restarted in between; these tests check the bytes (PUBLISH_AT records, snapshot
version 2, older formats still read) and what a recovered queue holds after a clean stop (snapshot) and
after a crash (replay of the log).
"""

from __future__ import annotations

import struct
from array import array
from pathlib import Path

import pytest

from memento.log import Log
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.events import MessagePublished, TxCommitted
from ottermq.broker.message import Message
from ottermq.store.codec import (
    RECORD_TYPES,
    RT_PUBLISH,
    RT_PUBLISH_AT,
    decode,
    decode_content,
    decode_publish_targets,
    encode,
    publish_prefix,
)
from ottermq.store.snapshot import MAGIC, QueueIndex, decode_snapshot, encode_snapshot
from ottermq.store.store import LOG_DIR, DurableStore
from tests.unit.store.brokers import live_broker, snapshot_indexes

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))
PUBLISHED = 1_700_000_000_123


def expiring(ms: int) -> bytes:
    return encode_properties(BasicProperties(delivery_mode=2, expiration=str(ms)))


# -- the bytes ----------------------------------------------------------------------------------------------


def test_a_publish_record_keeps_its_publish_time_and_properties_for_replay() -> None:
    event = MessagePublished("/", ("a", "b"), "x", "rk", expiring(5000), b"body", PUBLISHED)
    rtype, payload = encode(event)
    assert rtype == RT_PUBLISH_AT
    assert decode(rtype, payload) == event
    targets = decode_publish_targets(payload, rtype)
    assert (targets.vhost, targets.queues, targets.published) == ("/", ("a", "b"), PUBLISHED)
    assert targets.properties == expiring(5000) and targets.body == b""
    assert decode_content(payload, rtype) == ("x", "rk", expiring(5000), b"body")


def test_an_older_publish_record_is_still_read_with_an_unknown_publish_time() -> None:
    properties = expiring(5000)
    payload = publish_prefix("/", ("q",), "", "q", len(properties)) + properties + b"old"
    event = decode(RT_PUBLISH, payload)
    assert event == MessagePublished("/", ("q",), "", "q", properties, b"old", 0)
    targets = decode_publish_targets(payload, RT_PUBLISH)
    assert targets.published == 0 and targets.queues == ("q",)
    assert decode_content(payload) == ("", "q", properties, b"old")


def test_a_transaction_keeps_the_publish_time_of_each_publish() -> None:
    inner = (
        MessagePublished("/", ("q",), "", "q", PERSISTENT, b"1", PUBLISHED),
        MessagePublished("/", ("q",), "", "q", PERSISTENT, b"2", PUBLISHED + 7),
    )
    rtype, payload = encode(TxCommitted(inner))
    assert decode(rtype, payload) == TxCommitted(inner)


def test_a_snapshot_keeps_each_entry_deadline() -> None:
    index = QueueIndex(
        "/",
        "q",
        array("Q", [1, 2]),
        array("I", [0, 0]),
        array("I", [10, 20]),
        array("I", [0, 0]),
        array("B", [0, 1]),
        array("Q", [0, PUBLISHED]),
    )
    state = decode_snapshot(encode_snapshot([], [index], clean=True))
    assert state.queues[0].deadlines == array("Q", [0, PUBLISHED])
    assert list(state.queues[0].flags) == [0, 1]


def test_a_version_1_snapshot_is_still_read_without_deadlines() -> None:
    name = b"q"
    old = b"".join(
        (
            struct.pack("<4sHB", MAGIC, 1, 1),
            struct.pack("<I", 0),
            struct.pack("<I", 1),
            struct.pack("<BBI", 1, len(name), 1),
            b"/",
            name,
            struct.pack("<Q", 5),
            struct.pack("<I", 0),
            struct.pack("<I", 3),
            struct.pack("<I", 0),
            b"\x00",
        )
    )
    state = decode_snapshot(old)
    assert state.queues[0].deadlines is None and list(state.queues[0].ids) == [5]


# -- through a restart ------------------------------------------------------------------------------------


def publish(broker: Broker, queue: str, body: bytes, properties: bytes = PERSISTENT) -> None:
    vhost = broker.vhosts["/"]
    message = Message("", queue, properties, body)
    queues = vhost.route("", queue, message)
    vhost.publish_now(message, queues)


def deadlines(broker: Broker, queue: str) -> list[int]:
    return [entry.deadline for entry in broker.vhosts["/"].queues[queue].logged_entries()]


def build(tmp_path: Path) -> tuple[Broker, Log, dict[str, list[int]]]:
    """Two durable queues, one with x-message-ttl, one plain; messages with and without an expiration."""
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    broker = live_broker(log)
    vhost = broker.vhosts["/"]
    vhost.declare_queue("ttl", durable=True, arguments={"x-message-ttl": 60_000})
    vhost.declare_queue("plain", durable=True)
    publish(broker, "ttl", b"queue-ttl")
    publish(broker, "ttl", b"shorter-own", expiring(30_000))
    publish(broker, "plain", b"never")
    publish(broker, "plain", b"own", expiring(45_000))
    log.sync()
    live = {name: deadlines(broker, name) for name in ("ttl", "plain")}
    assert live["plain"][0] == 0 and all(live["ttl"]) and live["plain"][1]
    return broker, log, live


@pytest.mark.parametrize("clean", [True, False], ids=["snapshot", "replay"])
def test_a_restart_keeps_the_original_deadlines(tmp_path: Path, clean: bool) -> None:
    broker, log, live = build(tmp_path)
    if clean:
        state = encode_snapshot(broker.durable_events(), snapshot_indexes(broker), clean=True)
        log.save_snapshot(log.end_lsn, state)
    log.close()

    store = DurableStore.open(tmp_path)
    try:
        rebuilt = store.new_broker()
        store.recover(rebuilt)
        # The same absolute deadlines (publish and enqueue are a few microseconds apart live).
        for name in ("ttl", "plain"):
            for kept, original in zip(deadlines(rebuilt, name), live[name], strict=True):
                assert abs(kept - original) <= 5 and (kept == 0) == (original == 0)
        # The plain queue holds a message with its own expiration: it expires at its head, no features.
        plain = rebuilt.vhosts["/"].queues["plain"]
        assert plain.features is None and not plain.plain
    finally:
        store.close()


def test_a_message_past_its_deadline_at_restart_expires_at_once(tmp_path: Path) -> None:
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    broker = live_broker(log)
    broker.vhosts["/"].declare_queue("q", durable=True)
    # Logged as if published long ago with a 1 s expiration: due long before this restart.
    broker.vhosts["/"].journal.append(
        MessagePublished("/", ("q",), "", "q", expiring(1000), b"stale", PUBLISHED)
    )
    publish(broker, "q", b"fresh")
    log.sync()
    log.close()

    store = DurableStore.open(tmp_path)
    try:
        rebuilt = store.new_broker()
        store.recover(rebuilt)
        queue = rebuilt.vhosts["/"].queues["q"]
        assert deadlines(rebuilt, "q") == [PUBLISHED + 1000, 0]
        entry = queue.get()
        assert entry is not None and queue.content_of(entry).body == b"fresh"
    finally:
        store.close()
