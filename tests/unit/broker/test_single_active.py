"""Single active consumer: one consumer receives; failover in subscription order."""

from __future__ import annotations

from ottermq.broker.message import Message
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import FakeConsumer, offer


def _message(body: bytes) -> Message:
    return Message("", "q", b"\x00\x00", body)


def test_failover_in_subscription_order() -> None:
    queue = VHost().declare_queue("q", arguments={"x-single-active-consumer": True})
    a, b, c = FakeConsumer("a"), FakeConsumer("b"), FakeConsumer("c")
    for consumer in (a, b, c):
        queue.add_consumer(consumer)
    assert queue.consumer_count == 3
    assert queue.consumers() == [a, b, c]
    offer(queue, _message(b"1"))
    queue.remove_consumer(a)
    offer(queue, _message(b"2"))
    queue.remove_consumer(c)  # a waiting one leaves: nothing changes for b
    offer(queue, _message(b"3"))
    assert (a.bodies(), b.bodies(), c.bodies()) == ([b"1"], [b"2", b"3"], [])
    assert queue.consumer_count == 1


def test_new_active_consumer_gets_what_is_ready() -> None:
    queue = VHost().declare_queue("q", arguments={"x-single-active-consumer": True})
    a, b = FakeConsumer("a", credit=0), FakeConsumer("b")
    queue.add_consumer(a)
    queue.add_consumer(b)
    for body in (b"1", b"2"):
        offer(queue, _message(body))
    assert queue.ready_count == 2
    queue.remove_consumer(a)
    assert b.bodies() == [b"1", b"2"]


def test_auto_delete_waits_for_the_last_consumer() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", auto_delete=True, arguments={"x-single-active-consumer": True})
    a, b = FakeConsumer("a"), FakeConsumer("b")
    queue.add_consumer(a)
    queue.add_consumer(b)
    assert queue.remove_consumer(a) is False
    assert "q" in vhost.queues
    assert queue.remove_consumer(b) is True
    assert "q" not in vhost.queues


def test_deleting_the_queue_cancels_waiting_consumers() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", arguments={"x-single-active-consumer": True})
    a, b = FakeConsumer("a"), FakeConsumer("b")
    queue.add_consumer(a)
    queue.add_consumer(b)
    vhost.delete_queue("q")
    assert a.cancelled and b.cancelled
