"""A logged message's body is read back only from its own record.

Bodies are found by position (segment, offset, index); the record there must prove it is the message's
own (its LSN, or for a copy made by compaction the LSN of the original, and the publish's index). A
position that points at another message's record (stale after a salvage, a foreign segment, a bad
snapshot) is refused, never served as this message's body. Sizes span the log's read window.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memento.log import Log
from memento.record import RecordPosition
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.broker import Broker
from ottermq.broker.content import UnreadableContent
from ottermq.broker.message import Message
from ottermq.store.codec import RECORD_TYPES, pack_loc, unpack_loc
from ottermq.store.journal import ContentMismatch, MementoJournal
from ottermq.store.store import INDEX_MASK, LOG_DIR
from tests.unit.store.brokers import CountingLog, live_broker, log_contents

PERSISTENT = encode_properties(BasicProperties(delivery_mode=2))
# Around the log's 256 KiB read window, and past it.
EDGES = [262_123, 262_144, 262_145, 400_000, 3 << 20]


def make(path: Path) -> tuple[Broker, Log, MementoJournal]:
    log = Log.open(path / LOG_DIR, registry=RECORD_TYPES, segment_size=1 << 20)
    broker = live_broker(log, resident_limit=1 << 30)
    broker.vhosts["/"].declare_queue("q", durable=True)
    journal = broker.journal
    assert isinstance(journal, MementoJournal)
    return broker, log, journal


def publish(broker: Broker, body: bytes) -> int:
    """Publish a persistent message to "q"; its id in the content store."""
    vhost = broker.vhosts["/"]
    message = Message("ex", "q", PERSISTENT, body)
    _position, placed = vhost.publish(message, vhost.route("", "q", message))
    ((queue, entry),) = placed
    queue.enqueue(entry)
    return entry.msg_id


def body_of(i: int, size: int) -> bytes:
    return random.Random(i).randbytes(size)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.one_of(st.integers(0, 300_000), st.sampled_from(EDGES)), min_size=1, max_size=10))
def test_evicted_bodies_of_any_size_read_back(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int]
) -> None:
    broker, log, _journal = make(tmp_path_factory.mktemp("d"))
    counter = CountingLog(log)
    ids = [publish(broker, body_of(i, size)) for i, size in enumerate(sizes)]
    log.sync()
    contents = log_contents(broker)
    contents.resident_limit = 0
    contents.evict()
    assert contents.resident_bytes == 0 and len(contents) == len(ids)
    for i, msg_id in enumerate(ids):
        message = contents.get(msg_id)
        assert message.body == body_of(i, sizes[i]) and message.body_size == sizes[i]
        assert message.exchange == "ex" and message.routing_key == "q" and message.persistent
    assert counter.reads == len(ids)  # each one came back from the log
    log.close()


def test_a_position_holding_another_messages_record_is_refused(tmp_path: Path) -> None:
    broker, log, journal = make(tmp_path)
    first = publish(broker, b"first body")
    second = publish(broker, b"second body")
    log.sync()
    contents = log_contents(broker)
    first_loc, second_loc = contents.locations[first], contents.locations[second]
    assert journal.read_content(first, first_loc)[3] == b"first body"
    with pytest.raises(ContentMismatch, match=f"message {second}"):
        journal.read_content(second, first_loc)  # the position of another message's publish
    segment, offset, _index = unpack_loc(first_loc)
    with pytest.raises(ContentMismatch):
        journal.read_content(first, pack_loc(segment, offset, 1))  # right record, wrong index
    # What a stale position does to a message: its content is refused, not replaced by another's.
    contents.resident_limit = 0
    contents.evict()
    contents.relocate({second_loc & ~INDEX_MASK: first_loc & ~INDEX_MASK}, INDEX_MASK)
    assert contents.locations[second] == first_loc
    with pytest.raises(UnreadableContent, match="not its own") as refused:
        contents.get(second)
    assert isinstance(refused.value.__cause__, ContentMismatch)  # the queue then drops it (Queue.unreadable)
    assert contents.get(first).body == b"first body"
    log.close()


def test_a_compacted_copy_still_proves_its_owner(tmp_path: Path) -> None:
    """After compaction moves a record, the copy carries the original's LSN: the read is accepted at the
    new position and refused for any other message."""
    broker, log, journal = make(tmp_path)
    kept = publish(broker, b"k" * 5000)
    others = [publish(broker, bytes([i % 251]) * 5000) for i in range(400)]  # fill old segments
    log.sync()
    log.save_snapshot(log.durable_lsn, b"state")
    contents = log_contents(broker)
    old_loc = contents.locations[kept]
    segment, offset, _index = unpack_loc(old_loc)
    where = RecordPosition(segment, offset)
    new = log.reclaim(log.durable_lsn, lambda pos: pos == where).relocated[where]
    new_loc = pack_loc(new.segment, new.offset)
    assert journal.read_content(kept, new_loc)[3] == b"k" * 5000
    with pytest.raises(ContentMismatch):
        journal.read_content(others[0], new_loc)
    # The content store learns the move (as the store tells it after a reclaim) and reads the copy.
    contents.relocate({old_loc: new_loc}, INDEX_MASK)
    assert contents.locations[kept] == new_loc
    contents.resident_limit = 0
    contents.evict()
    assert contents.get(kept).body == b"k" * 5000
    log.close()
