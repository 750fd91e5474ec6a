"""Contents of logged messages in memory: counted while held, let go once the message is gone.

The content store (store/contents.py) keeps the newest logged contents in memory, least recently used
dropped first past a byte budget, and reads the others back from the log. A message settled from every
queue gives its last reference back and must stop counting at once (there is no sweep: the reference
count says when), or the budget would be spent on garbage and an idle broker would keep it alive.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from memento.log import Log
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.message import Message
from ottermq.store.codec import RECORD_TYPES
from ottermq.store.store import (
    CONTENT_MAX,
    CONTENT_MIN,
    INDEX_BYTES,
    LOG_DIR,
    DurableStore,
    StoreOptions,
    content_budget,
)
from tests.unit.store.brokers import CountingLog, live_broker, log_contents

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))
TRANSIENT = encode_properties(BasicProperties(delivery_mode=1))


def cost(body_size: int) -> int:
    """What one resident logged content of `body_size` bytes counts (body, properties, overhead)."""
    return body_size + len(PERSISTENT) + 128


def make(tmp_path: Path, budget: int) -> tuple[Broker, Log]:
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 22)
    broker = live_broker(log, resident_limit=budget)
    broker.vhosts["/"].declare_queue("q", durable=True)
    return broker, log


def publish(broker: Broker, body: bytes, properties: bytes = PERSISTENT, exchange: str = "") -> None:
    vhost = broker.vhosts["/"]
    message = Message(exchange, "q", properties, body)
    vhost.publish_now(message, vhost.route(exchange, "q", message))


def test_purged_messages_stop_counting(tmp_path: Path) -> None:
    broker, log = make(tmp_path, budget=1 << 30)
    contents = log_contents(broker)
    for i in range(100):
        publish(broker, bytes([i]) * 1000)
    assert contents.resident_bytes == 100 * cost(1000) and len(contents) == 100
    # A content a caller still holds (a delivery being written) is its own: the store lets go anyway.
    held = [contents.get(msg_id) for msg_id in list(contents.locations)[:10]]
    assert broker.vhosts["/"].purge_queue("q") == 100
    assert contents.resident_bytes == 0 and len(contents) == 0 and not contents.locations
    assert contents.evicted_bytes == 100 * cost(1000)  # the store returns that memory to the system
    assert [message.body for message in held] == [bytes([i]) * 1000 for i in range(10)]
    log.close()


def test_a_consumed_message_stops_counting_at_its_last_settle(tmp_path: Path) -> None:
    """Fanned out to two durable queues, a message counts until the second queue settles it, and not a
    moment longer; a transient one counts in the broker's held bytes the same way."""
    broker, log = make(tmp_path, budget=1 << 30)
    vhost = broker.vhosts["/"]
    contents = log_contents(broker)
    vhost.declare_queue("q2", durable=True)
    vhost.declare_exchange("fan", "fanout", durable=True)
    vhost.bind_queue("q", "fan")
    vhost.bind_queue("q2", "fan")
    publish(broker, b"p" * 500, exchange="fan")
    publish(broker, b"t" * 300, TRANSIENT, exchange="fan")
    first, second = vhost.queues["q"], vhost.queues["q2"]
    assert contents.resident_bytes == cost(500) and broker.memory.held_bytes > 300
    held = broker.memory.held_bytes
    for queue in (first, second):
        entries = [queue.get(), queue.get()]
        assert all(entries)
        queue.settle([entry for entry in entries if entry is not None])
        if queue is first:
            assert contents.resident_bytes == cost(500) and broker.memory.held_bytes == held
            assert len(contents) == 2
    assert contents.resident_bytes == 0 and broker.memory.held_bytes == 0 and len(contents) == 0
    log.close()


def test_freed_messages_do_not_pile_up(tmp_path: Path) -> None:
    """Publish and purge many times under a large budget: nothing is ever evicted for want of room, yet
    every purge lets go of the purged messages at once."""
    broker, log = make(tmp_path, budget=1 << 30)
    vhost = broker.vhosts["/"]
    contents = log_contents(broker)
    for round_ in range(30):
        for i in range(1000):
            publish(broker, bytes([(round_ + i) % 251]) * 100)
        assert contents.resident_bytes == 1000 * cost(100)
        vhost.purge_queue("q")
        log.sync()  # keeps the staging area small; durability plays no part here
        assert contents.resident_bytes == 0 and len(contents) == 0 and not contents.locations
    log.close()


def test_held_messages_are_evicted_oldest_first_and_read_back(tmp_path: Path) -> None:
    broker, log = make(tmp_path, budget=20_000)
    counter = CountingLog(log)
    contents = log_contents(broker)
    for i in range(50):
        publish(broker, bytes([i]) * 1000)
        assert contents.resident_bytes <= 20_000
    log.sync()
    queue = broker.vhosts["/"].queues["q"]
    ids = [entry.msg_id for entry in queue.logged_entries()]
    assert len(contents) == 50  # every one still held, most by id and location only
    assert contents.get(ids[-1]).body == bytes([49]) * 1000 and counter.reads == 0  # the newest kept
    assert contents.get(ids[0]).body == bytes([0]) * 1000 and counter.reads == 1  # the oldest dropped
    assert [contents.get(msg_id).body for msg_id in ids] == [bytes([i]) * 1000 for i in range(50)]
    assert contents.resident_bytes <= 20_000
    log.close()


def test_content_budget_gives_contents_what_the_index_leaves() -> None:
    memory = 320 * 1024 * 1024
    assert content_budget(0, memory) == CONTENT_MAX
    assert content_budget(100_000, memory) == min(CONTENT_MAX, memory - 100_000 * INDEX_BYTES)
    assert CONTENT_MIN < content_budget(700_000, memory) < CONTENT_MAX
    assert content_budget(1_000_000, memory) == CONTENT_MIN


def test_the_store_sizes_the_budget_by_the_messages_held(tmp_path: Path) -> None:
    """Every check_interval the store sets the content budget from the held messages: with 2000 held and
    16 MiB of memory for messages, the index takes 2000 * INDEX_BYTES and the contents get the rest;
    after a purge the contents get it all and nothing is counted."""
    asyncio.run(_budget_scenario(tmp_path))


async def _budget_scenario(tmp_path: Path) -> None:
    memory = 16 << 20
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 22)
    store = DurableStore(log, StoreOptions(check_interval=0.02, message_memory=memory))
    broker = store.new_broker()
    store.recover(broker)
    await store.start()
    contents = store.contents
    try:
        broker.vhosts["/"].declare_queue("q", durable=True)
        for i in range(2000):
            publish(broker, bytes([i % 251]) * 100)
        await asyncio.sleep(0.2)
        assert contents.resident_limit == content_budget(2000, memory) == memory - 2000 * INDEX_BYTES
        assert contents.resident_bytes == 2000 * cost(100)
        broker.vhosts["/"].purge_queue("q")
        assert contents.resident_bytes == 0 and len(contents) == 0
        await asyncio.sleep(0.2)
        assert contents.resident_limit == content_budget(0, memory) == memory
        assert contents.evicted_bytes == 0  # the store looked, and gave the freed memory back
    finally:
        await store.stop()
        store.close()
