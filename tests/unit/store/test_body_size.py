"""x-max-length-bytes counts a durable backlog without reading bodies back from the log.

A queue entry keeps its message's body length (`QueueEntry.size`) from publish, replay (the publish
record) and snapshot restore (a column of the snapshot index since version 3). These tests fill a capped
durable queue past the content store's resident budget, so contents are evicted, and check that
drop-head, a clean restart and a crash restart count bytes exactly while the log is never read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memento.log import Log
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.message import Message
from ottermq.broker.queue import Queue
from ottermq.store.codec import RECORD_TYPES
from ottermq.store.snapshot import decode_snapshot, encode_snapshot, index_of
from ottermq.store.store import LOG_DIR, DurableStore
from tests.unit.store.brokers import CountingLog, live_broker, log_contents

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))
LIMIT = 10_000
CAPPED = {"x-max-length-bytes": LIMIT}


def publish(broker: Broker, size: int, tag: int) -> None:
    """One persistent message of `size` bytes into "capped" (the content store evicts contents over its
    budget as they come in)."""
    vhost = broker.vhosts["/"]
    message = Message("", "capped", PERSISTENT, bytes([tag % 251]) * size)
    vhost.publish_now(message, vhost.route("", "capped", message))


def capped(broker: Broker) -> Queue:
    return broker.vhosts["/"].queues["capped"]


def ready_bytes(queue: Queue) -> int:
    """The body bytes the queue's length limit counts."""
    assert queue.features is not None and queue.features.limit is not None
    return queue.features.limit.ready_bytes


def state(queue: Queue) -> tuple[int, int, int]:
    """(ready messages, counted bytes, real bytes: from the entries' sizes, without loading anything)."""
    return (
        queue.ready_count,
        ready_bytes(queue),
        sum(e.size for e in queue.logged_entries()),
    )


def open_store(path: Path) -> tuple[Broker, DurableStore, CountingLog]:
    store = DurableStore.open(path)
    counter = CountingLog(store.log)
    store.contents.resident_limit = 4096
    broker = store.new_broker()
    store.recover(broker)
    return broker, store, counter


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Broker, Log, CountingLog]]:
    """A capped durable queue fed 60 messages of 700..1290 bytes with a 4 KiB resident budget."""
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    counter = CountingLog(log)
    broker = live_broker(log, resident_limit=4096)
    broker.vhosts["/"].declare_queue("capped", durable=True, arguments=CAPPED)
    for i in range(60):
        publish(broker, 700 + 10 * i, i)
    yield broker, log, counter
    log.close()  # a no-op when the test closed it


def expected_tail(sizes: list[int]) -> tuple[int, int]:
    """What drop-head keeps of messages of these sizes: (count, bytes) of the longest tail within LIMIT."""
    total = count = 0
    for size in reversed(sizes):
        if total + size > LIMIT:
            break
        total += size
        count += 1
    return count, total


def test_drop_head_counts_evicted_messages_without_reading_them(filled: Any) -> None:
    broker, _log, counter = filled
    queue = capped(broker)
    contents = log_contents(broker)
    count, total = expected_tail([700 + 10 * i for i in range(60)])
    assert state(queue) == (count, total, total)
    # Contents left memory (the store holds the queue's ids, a few contents only)...
    assert contents.evicted_bytes > 0 and len(contents) == count and contents.resident_bytes < total
    assert counter.reads == 0  # ...and none came back to be counted or dropped
    # Deliveries read what they deliver, and only that; the count stays exact.
    entry = queue.get()
    assert entry is not None and len(queue.content_of(entry).body) == entry.size
    assert counter.reads == 1  # the head is the oldest: read back from the log
    assert ready_bytes(queue) == total - entry.size


def test_a_clean_restart_counts_from_the_snapshot_without_reading(filled: Any, tmp_path: Path) -> None:
    broker, log, _counter = filled
    queue = capped(broker)
    before = state(queue)
    log.sync()
    index = index_of("/", "capped", queue.logged_entries(), broker.contents.locations)
    assert index.sizes is not None
    assert list(index.sizes) == [e.size for e in queue.logged_entries()]
    log.save_snapshot(log.end_lsn, encode_snapshot(broker.durable_events(), [index], clean=True))
    log.close()

    rebuilt, store, counter = open_store(tmp_path)
    try:
        assert store.recovery.snapshot_lsn > 0 and store.recovery.replayed == 0
        queue = capped(rebuilt)
        assert state(queue) == before and counter.reads == 0
        # One more message drops exactly as many from the head as its size needs, still without a read.
        sizes = [e.size for e in queue.logged_entries()]
        publish(rebuilt, 1500, 99)
        count, total = expected_tail([*sizes, 1500])
        assert state(queue) == (count, total, total) and counter.reads == 0
    finally:
        store.close()


def test_a_crash_restart_counts_from_the_publish_records_without_reading(filled: Any, tmp_path: Path) -> None:
    broker, log, _counter = filled
    before = state(capped(broker))
    log.sync()
    log.close()  # no snapshot: everything is replayed

    rebuilt, store, counter = open_store(tmp_path)
    try:
        assert store.recovery.snapshot_lsn == 0 and store.recovery.replayed > 60
        assert state(capped(rebuilt)) == before and counter.reads == 0
    finally:
        store.close()


def test_an_older_snapshot_without_sizes_still_counts_exactly(filled: Any, tmp_path: Path) -> None:
    broker, log, _counter = filled
    queue = capped(broker)
    before = state(queue)
    log.sync()
    index = index_of("/", "capped", queue.logged_entries(), broker.contents.locations)
    current = encode_snapshot(broker.durable_events(), [index], clean=True)
    # The same snapshot as version 2 wrote it: the version field says 2 and the queue (the last thing in
    # it) has no size column.
    older = current[:4] + struct.pack("<H", 2) + current[6 : -4 * len(index)]
    assert decode_snapshot(older).queues[0].sizes is None
    assert list(decode_snapshot(older).queues[0].ids) == list(index.ids)
    log.save_snapshot(log.end_lsn, older)
    log.close()

    rebuilt, store, counter = open_store(tmp_path)
    try:
        queue = capped(rebuilt)
        # Sizes are learnt once, by reading each body at start-up (what every restart did before).
        assert state(queue) == before and counter.reads == before[0]
    finally:
        store.close()
