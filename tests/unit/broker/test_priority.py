"""PriorityReady: the per-priority FIFOs behind a priority queue's ready list."""

from __future__ import annotations

from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker.message import Message, QueueEntry, message_priority
from ottermq.broker.priority import PriorityReady, entry_priority
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import FakeConsumer, offer


def _message(seq: int, priority: int | None) -> Message:
    props = encode_properties(BasicProperties(priority=priority))
    return Message("", "q", props, str(seq).encode())


def _entry(seq: int, priority: int | None) -> QueueEntry:
    return QueueEntry(-seq, 1, message_priority(_message(seq, priority).properties), seq=seq)


def test_highest_priority_first_fifo_within() -> None:
    ready = PriorityReady(10)
    for seq, priority in ((1, 1), (2, None), (3, 5), (4, 9), (5, 5)):
        ready.append(_entry(seq, priority))
    assert len(ready) == 5 and ready
    assert ready[0].seq == 4
    assert [ready.popleft().seq for _ in range(5)] == [4, 3, 5, 1, 2]
    assert not ready


def test_priority_is_capped() -> None:
    assert entry_priority(_entry(1, 200), 5) == 5
    assert entry_priority(_entry(1, None), 5) == 0
    ready = PriorityReady(5)
    ready.append(_entry(1, 200))
    ready.append(_entry(2, 5))
    assert [ready.popleft().seq for _ in range(2)] == [1, 2]


def test_extendleft_puts_entries_back_in_order() -> None:
    ready = PriorityReady(3)
    entries = [_entry(seq, 3 if seq < 3 else 1) for seq in range(1, 5)]
    for entry in entries:
        ready.append(entry)
    taken = [ready.popleft() for _ in range(3)]  # 1, 2 (priority 3) and 3 (priority 1)
    for entry in taken:
        entry.redelivered = True
    ready.extendleft(reversed(taken))
    assert [entry.seq for entry in ready] == [1, 2, 3, 4]


def test_clear_and_extend() -> None:
    ready = PriorityReady(2)
    ready.extend([_entry(1, 0), _entry(2, 2)])
    assert [entry.seq for entry in ready] == [2, 1]
    ready.clear()
    assert len(ready) == 0
    ready.append(_entry(3, 1))
    assert ready.popleft().seq == 3


def test_priority_queue_dispatches_by_priority() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", arguments={"x-max-priority": 9})
    for seq, priority in ((1, 1), (2, 9), (3, 4)):
        offer(queue, _message(seq, priority))
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)
    queue.dispatch()
    assert consumer.bodies() == [b"2", b"3", b"1"]
