"""Priority queues (x-max-priority): priority order, FIFO within a priority, capping, waiting consumers."""

from __future__ import annotations

import functools
from typing import Any

import pika

from tests.integration.conftest import Resources, broker_error, drain, queue_counts, wait_for


def _has(items: list[tuple[bytes, int]], count: int) -> bool:
    return len(items) == count


def _publish(channel: Any, queue: str, body: bytes, priority: int | None) -> None:
    props = pika.BasicProperties(priority=priority) if priority is not None else None
    channel.basic_publish("", queue, body, props)


def test_delivery_in_priority_order_fifo_within(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-max-priority": 10})
    for body, priority in ((b"p1", 1), (b"none", None), (b"p5a", 5), (b"p9", 9), (b"p5b", 5), (b"p0", 0)):
        _publish(channel, queue, body, priority)
    assert queue_counts(channel, queue, (6, 0)) == (6, 0)
    assert drain(channel, queue) == [b"p9", b"p5a", b"p5b", b"p1", b"none", b"p0"]


def test_priorities_above_the_maximum_are_capped(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-max-priority": 5})
    for body, priority in ((b"low", 1), (b"p200", 200), (b"p5", 5), (b"p9", 9)):
        _publish(channel, queue, body, priority)
    assert queue_counts(channel, queue, (4, 0)) == (4, 0)
    assert drain(channel, queue) == [b"p200", b"p5", b"p9", b"low"]


def test_requeued_messages_keep_their_place(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-max-priority": 3})
    for body, priority in ((b"a", 3), (b"b", 3), (b"c", 1)):
        _publish(channel, queue, body, priority)
    assert queue_counts(channel, queue, (3, 0)) == (3, 0)
    first = channel.basic_get(queue)[0]
    channel.basic_nack(first.delivery_tag, requeue=True)
    assert drain(channel, queue) == [b"a", b"b", b"c"]


def test_consumer_already_waiting(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue, arguments={"x-max-priority": 10})
    ch.basic_qos(prefetch_count=1)
    got: list[tuple[bytes, int]] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append((b, m.delivery_tag)))
    # The first goes straight to the waiting consumer; the rest wait for its ack, then come by priority.
    for body, priority in ((b"first", 1), (b"low", 1), (b"high", 9), (b"mid", 5)):
        _publish(ch, queue, body, priority)
    wait_for(connection, lambda: len(got) == 1, what="the first delivery")
    assert queue_counts(ch, queue, (3, 1)) == (3, 1)
    for expected in (2, 3, 4):
        ch.basic_ack(got[-1][1])
        wait_for(connection, functools.partial(_has, got, expected), what="the next delivery")
    assert [body for body, _ in got] == [b"first", b"high", b"mid", b"low"]


def test_invalid_max_priority(connection: pika.BlockingConnection) -> None:
    name = "test.priority.invalid"
    for value, reason in (
        (256, "{max_value_exceeded,256}"),
        (-1, "{value_negative,-1}"),
        ("x", '"expected integer, got longstr"'),
    ):
        ch = connection.channel()

        def declare(ch: Any = ch, value: Any = value) -> None:
            ch.queue_declare(name, arguments={"x-max-priority": value})

        assert broker_error(declare) == (
            406,
            f"PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{name}' in vhost '/': {reason}",
        )
