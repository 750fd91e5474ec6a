"""Contents of logged messages in memory: counted while held, let go once the message is gone.

The journal counts every logged message that holds its content against a budget and drops the oldest
contents over it. A message settled from every queue must stop counting and be freed at the next sweep
(the store sweeps every second), or the budget would be spent on garbage and an idle broker would keep
it alive.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from memento.log import Log
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.message import Message, StoredMessage
from ottermq.store.codec import RECORD_TYPES
from ottermq.store.journal import MementoJournal
from ottermq.store.store import (
    CONTENT_MAX,
    CONTENT_MIN,
    INDEX_BYTES,
    LOG_DIR,
    DurableStore,
    StoreOptions,
    content_budget,
)

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))


def make(tmp_path: Path, budget: int) -> tuple[Broker, Log, MementoJournal]:
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 22)
    journal = MementoJournal(log, resident_bytes=budget)
    broker = Broker(journal=journal)
    broker.vhosts["/"].declare_queue("q", durable=True)
    return broker, log, journal


def publish(broker: Broker, body: bytes) -> None:
    vhost = broker.vhosts["/"]
    message = Message("", "q", PERSISTENT, body)
    queues = vhost.route("", "q", message)
    vhost.log_publish(message, queues)
    for target in queues:
        target.enqueue(message)


def test_purged_messages_stop_counting(tmp_path: Path) -> None:
    broker, log, journal = make(tmp_path, budget=1 << 30)
    for i in range(100):
        publish(broker, bytes([i]) * 1000)
    assert journal.resident_bytes >= 100 * 1000
    held = list(journal._resident)[:10]
    assert broker.vhosts["/"].purge_queue("q") == 100
    journal.sweep()
    assert journal.resident_bytes == 10 * (1000 + len(PERSISTENT) + 128)  # held by this test only
    assert list(journal._resident) == held
    del held
    journal.sweep()
    assert journal.resident_bytes == 0 and not journal._resident
    log.close()


def test_freed_messages_do_not_pile_up(tmp_path: Path) -> None:
    """Publish and purge many times under a large budget: nothing is ever evicted, yet every sweep
    lets go of the purged messages."""
    broker, log, journal = make(tmp_path, budget=1 << 30)
    vhost = broker.vhosts["/"]
    for round_ in range(30):
        for i in range(1000):
            publish(broker, bytes([(round_ + i) % 251]) * 100)
        vhost.purge_queue("q")
        journal.sweep()
        log.sync()  # keeps the staging area small; durability plays no part here
        assert journal.resident_bytes == 0 and not journal._resident
    log.close()


def test_held_messages_are_evicted_oldest_first_and_read_back(tmp_path: Path) -> None:
    broker, log, journal = make(tmp_path, budget=20_000)
    for i in range(50):
        publish(broker, bytes([i]) * 1000)
        journal.evict()  # the end of an event-loop turn
    log.sync()
    queue = broker.vhosts["/"].queues["q"]
    messages = [entry.message for entry in queue.logged_entries()]
    assert all(isinstance(m, StoredMessage) for m in messages)
    loaded = [m.loaded for m in messages if isinstance(m, StoredMessage)]
    assert loaded[-1] and not loaded[0]  # the newest kept, the oldest dropped
    assert journal.resident_bytes <= 20_000
    assert [m.body for m in messages] == [bytes([i]) * 1000 for i in range(50)]
    log.close()


def test_content_budget_gives_contents_what_the_index_leaves() -> None:
    memory = 320 * 1024 * 1024
    assert content_budget(0, memory) == CONTENT_MAX
    assert content_budget(100_000, memory) == min(CONTENT_MAX, memory - 100_000 * INDEX_BYTES)
    assert CONTENT_MIN < content_budget(700_000, memory) < CONTENT_MAX
    assert content_budget(1_000_000, memory) == CONTENT_MIN


def test_the_store_sizes_the_budget_by_the_messages_held_and_sweeps(tmp_path: Path) -> None:
    """Every check_interval the store sets the content budget from the held messages and lets go of
    consumed ones: with 2000 held and 16 MiB of memory for messages, the index takes 2000 * INDEX_BYTES and
    the contents get the rest; after a purge the contents get it all and nothing is counted."""
    asyncio.run(_budget_scenario(tmp_path))


async def _budget_scenario(tmp_path: Path) -> None:
    memory = 16 << 20
    log = Log.open(tmp_path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 22)
    store = DurableStore(log, StoreOptions(check_interval=0.02, message_memory=memory))
    broker = store.new_broker()
    store.recover(broker)
    await store.start()
    journal = store.journal
    try:
        broker.vhosts["/"].declare_queue("q", durable=True)
        for i in range(2000):
            publish(broker, bytes([i % 251]) * 100)
        await asyncio.sleep(0.2)
        assert journal.resident_limit == content_budget(2000, memory) == memory - 2000 * INDEX_BYTES
        assert journal.resident_bytes == 2000 * (100 + len(PERSISTENT) + 128)
        broker.vhosts["/"].purge_queue("q")
        await asyncio.sleep(0.2)
        assert journal.resident_limit == content_budget(0, memory) == memory
        assert journal.resident_bytes == 0 and not journal._resident
    finally:
        await store.stop()
        store.close()
