"""Queue: FIFO order, requeue order, round-robin dispatch with credit, priorities, exclusive consumers,
auto-delete."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ottermq.amqp.errors import ChannelError
from ottermq.broker.message import QueueEntry
from ottermq.broker.queue import Queue
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import FakeConsumer, content, message, offer


def filled(n: int) -> Queue:
    queue = Queue("q")
    for i in range(n):
        offer(queue, message("q", str(i).encode()))
    return queue


def take_all(queue: Queue) -> list[QueueEntry]:
    entries = []
    while (entry := queue.get()) is not None:
        entries.append(entry)
    return entries


def bodies(queue: Queue, entries: list[QueueEntry]) -> list[bytes]:
    return [content(queue, entry).body for entry in entries]


def test_fifo() -> None:
    queue = filled(5)
    assert queue.ready_count == 5
    assert bodies(queue, take_all(queue)) == [b"0", b"1", b"2", b"3", b"4"]
    assert queue.get() is None


def test_requeue_restores_original_order_at_the_head() -> None:
    queue = filled(6)
    delivered = [queue.get() for _ in range(4)]  # 0..3 delivered, 4 and 5 still ready
    entries = [entry for entry in delivered if entry is not None]
    queue.requeue([entries[3], entries[1]])  # out of order, as a consumer might
    queue.requeue([entries[2]])  # later, one that belongs in between
    rest = take_all(queue)
    assert bodies(queue, rest) == [b"1", b"2", b"3", b"4", b"5"]
    assert [entry.redelivered for entry in rest] == [True, True, True, False, False]


def test_requeue_on_a_deleted_queue_drops() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q")
    offer(queue, message("q"))
    entry = queue.get()
    assert entry is not None
    vhost.delete_queue("q")
    queue.requeue([entry])
    assert queue.ready_count == 0


def test_round_robin_among_consumers() -> None:
    queue = Queue("q")
    a, b, c = FakeConsumer("a"), FakeConsumer("b"), FakeConsumer("c")
    for consumer in (a, b, c):
        queue.add_consumer(consumer)
    for i in range(7):
        offer(queue, message("q", str(i).encode()))
    assert a.bodies() == [b"0", b"3", b"6"]
    assert b.bodies() == [b"1", b"4"]
    assert c.bodies() == [b"2", b"5"]


def test_dispatch_skips_consumers_without_credit_and_waits_when_none_has_any() -> None:
    queue = Queue("q")
    a, b = FakeConsumer("a", credit=1), FakeConsumer("b", credit=2)
    queue.add_consumer(a)
    queue.add_consumer(b)
    for i in range(5):
        offer(queue, message("q", str(i).encode()))
    assert a.bodies() == [b"0"]
    assert b.bodies() == [b"1", b"2"]
    assert queue.ready_count == 2
    a.credit = 5  # e.g. an ack arrived: the channel calls dispatch()
    queue.dispatch()
    assert a.bodies() == [b"0", b"3", b"4"]
    assert queue.ready_count == 0


def test_add_consumer_does_not_dispatch_until_asked() -> None:
    queue = filled(2)
    consumer = FakeConsumer("a")
    queue.add_consumer(consumer)
    assert consumer.received == []  # the channel sends consume-ok first
    queue.dispatch()
    assert consumer.bodies() == [b"0", b"1"]


def test_higher_priority_consumers_first() -> None:
    queue = Queue("q")
    low = FakeConsumer("low")
    high1, high2 = FakeConsumer("h1", 2, priority=5), FakeConsumer("h2", 1, priority=5)
    for consumer in (low, high1, high2):
        queue.add_consumer(consumer)
    assert [c.tag for c in queue.consumers()] == ["h1", "h2", "low"]
    for i in range(5):
        offer(queue, message("q", str(i).encode()))
    assert high1.bodies() == [b"0", b"2"]
    assert high2.bodies() == [b"1"]
    assert low.bodies() == [b"3", b"4"]


def test_requeued_messages_are_redelivered_first() -> None:
    queue = Queue("q")
    first = FakeConsumer("a", credit=2)
    queue.add_consumer(first)
    for i in range(4):
        offer(queue, message("q", str(i).encode()))
    queue.remove_consumer(first)
    second = FakeConsumer("b")
    queue.add_consumer(second)
    queue.requeue(first.received)  # the first consumer's channel closed
    assert second.bodies() == [b"0", b"1", b"2", b"3"]
    assert [entry.redelivered for entry in second.received] == [True, True, False, False]


def test_consumer_leaving_inside_deliver() -> None:
    queue = Queue("q")

    class Leaving(FakeConsumer):
        def deliver(self, queue: Queue, entry: QueueEntry) -> None:
            super().deliver(queue, entry)
            queue.remove_consumer(self)

    leaving, staying = Leaving("leaving"), FakeConsumer("staying")
    queue.add_consumer(leaving)
    queue.add_consumer(staying)
    for i in range(4):
        offer(queue, message("q", str(i).encode()))
    assert leaving.bodies() == [b"0"]
    assert staying.bodies() == [b"1", b"2", b"3"]


def test_consumer_requeueing_inside_deliver_gets_the_message_again() -> None:
    flags: list[bool] = []  # the redelivered flag as each delivery saw it

    class RejectsFirst(FakeConsumer):
        def deliver(self, queue: Queue, entry: QueueEntry) -> None:
            super().deliver(queue, entry)
            flags.append(entry.redelivered)
            if not entry.redelivered:
                queue.requeue([entry])  # basic.reject(requeue=True) straight away

    for consumers in ([RejectsFirst("only")], [RejectsFirst("a"), RejectsFirst("b")]):
        flags.clear()
        queue = Queue("q")
        for consumer in consumers:
            queue.add_consumer(consumer)
        offer(queue, message("q", b"m"))
        assert flags == [False, True]
        assert sum(len(consumer.received) for consumer in consumers) == 2
        assert queue.ready_count == 0


def test_sole_consumer_changes_are_followed() -> None:
    queue = Queue("q")
    a, b, c = FakeConsumer("a"), FakeConsumer("b"), FakeConsumer("c")
    queue.add_consumer(a)
    queue.add_consumer(b)
    queue.remove_consumer(a)
    offer(queue, message("q", b"1"))
    queue.remove_consumer(b)
    offer(queue, message("q", b"2"))  # nobody: stays ready
    queue.add_consumer(c)
    queue.dispatch()
    offer(queue, message("q", b"3"))
    assert (a.bodies(), b.bodies(), c.bodies()) == ([], [b"1"], [b"2", b"3"])


def test_exclusive_consumer() -> None:
    queue = Queue("q")
    exclusive = FakeConsumer("x", exclusive=True)
    queue.add_consumer(exclusive)
    text = "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use"
    for candidate in (FakeConsumer("a"), FakeConsumer("b", exclusive=True)):
        with pytest.raises(ChannelError) as caught:
            queue.add_consumer(candidate)
        assert (caught.value.reply_code, caught.value.reply_text) == (403, text)
    queue.remove_consumer(exclusive)
    queue.add_consumer(FakeConsumer("a"))
    with pytest.raises(ChannelError):
        queue.check_can_consume(exclusive=True)  # others are there already
    queue.check_can_consume(exclusive=False)


def test_auto_delete_after_last_consumer_only() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", auto_delete=True)
    vhost.bind_queue("q", "amq.direct", "k")
    assert "q" in vhost.queues  # no consumer ever: it stays
    a, b = FakeConsumer("a"), FakeConsumer("b")
    queue.add_consumer(a)
    queue.add_consumer(b)
    assert queue.remove_consumer(a) is False
    assert queue.remove_consumer(FakeConsumer("stranger")) is False
    assert queue.remove_consumer(b) is True
    assert "q" not in vhost.queues
    assert queue.deleted
    assert list(vhost.bindings()) == []
    assert not b.cancelled  # it left on its own


def test_non_auto_delete_queue_stays_without_consumers() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q")
    consumer = FakeConsumer("a")
    queue.add_consumer(consumer)
    assert queue.remove_consumer(consumer) is False
    assert "q" in vhost.queues


def test_purge_leaves_delivered_messages_alone() -> None:
    queue = filled(3)
    entry = queue.get()
    assert queue.purge() == 2
    assert entry is not None
    queue.requeue([entry])
    assert bodies(queue, take_all(queue)) == [b"0"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=40))
def test_ready_messages_stay_in_publish_order(steps: list[tuple[bool, int]]) -> None:
    """Whatever is taken and given back, and in whatever order, the ready list stays in publish order."""
    queue = filled(10)
    held: list[QueueEntry] = []
    for take, count in steps:
        if take:
            for _ in range(count):
                entry = queue.get()
                if entry is not None:
                    held.append(entry)
        else:
            back = held[::2][:count]  # every other held entry, handed back newest first
            held = [entry for entry in held if entry not in back]
            queue.requeue(back[::-1])
        seqs = [entry.seq for entry in queue._ready]
        assert seqs == sorted(seqs)
    queue.requeue(held)
    assert bodies(queue, take_all(queue)) == [str(i).encode() for i in range(10)]
