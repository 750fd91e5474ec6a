"""basic.qos: prefetch per consumer (global=false) and per channel (global=true), as RabbitMQ reads them.

A window is checked by two facts: the consumer received exactly N messages and the queue reports the rest as
ready, so the broker delivered no more than N (no sleeping to see whether more arrive).
"""

from __future__ import annotations

from typing import Any

import pika

from tests.integration.conftest import queue_counts, wait_for


def _queue_with(ch: Any, count: int) -> str:
    queue: str = ch.queue_declare("", exclusive=True).method.queue
    for i in range(count):
        ch.basic_publish("", queue, str(i).encode())
    return queue


class Holder:
    """A consumer callback that keeps delivery tags without acking."""

    def __init__(self) -> None:
        self.tags: list[int] = []

    def __call__(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self.tags.append(method.delivery_tag)


def test_prefetch_per_consumer(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    q1, q2 = _queue_with(ch, 5), _queue_with(ch, 5)
    ch.basic_qos(prefetch_count=2)
    h1, h2 = Holder(), Holder()
    ch.basic_consume(q1, h1)
    ch.basic_consume(q2, h2)
    wait_for(connection, lambda: len(h1.tags) == 2 and len(h2.tags) == 2, what="two each")
    assert queue_counts(ch, q1, (3, 1)) == (3, 1)
    assert queue_counts(ch, q2, (3, 1)) == (3, 1)
    assert (len(h1.tags), len(h2.tags)) == (2, 2)


def test_prefetch_global_is_per_channel(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    q1, q2 = _queue_with(ch, 5), _queue_with(ch, 5)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    h1, h2 = Holder(), Holder()
    ch.basic_consume(q1, h1)
    wait_for(connection, lambda: len(h1.tags) == 3, what="the channel's window")
    ch.basic_consume(q2, h2)
    # The window is full: the second consumer gets nothing until something is acked.
    assert queue_counts(ch, q1, (2, 1)) == (2, 1)
    assert queue_counts(ch, q2, (5, 1)) == (5, 1)
    ch.basic_ack(h1.tags[0])
    wait_for(connection, lambda: len(h1.tags) + len(h2.tags) == 4, what="one more delivery")
    assert len(h1.tags) + len(h2.tags) == 4


def test_per_consumer_and_global_together(connection: pika.BlockingConnection) -> None:
    """Both limits apply: each consumer at most 2, the channel at most 3."""
    ch = connection.channel()
    q1, q2 = _queue_with(ch, 5), _queue_with(ch, 5)
    ch.basic_qos(prefetch_count=2)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    h1, h2 = Holder(), Holder()
    ch.basic_consume(q1, h1)
    wait_for(connection, lambda: len(h1.tags) == 2, what="the consumer's window")
    assert queue_counts(ch, q1, (3, 1)) == (3, 1)
    ch.basic_consume(q2, h2)
    wait_for(connection, lambda: len(h2.tags) == 1, what="what is left of the channel's window")
    assert queue_counts(ch, q2, (4, 1)) == (4, 1)
    assert (len(h1.tags), len(h2.tags)) == (2, 1)


def test_ack_opens_window(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 4)
    ch.basic_qos(prefetch_count=1)
    got: list[bytes] = []

    def on_message(c: Any, method: Any, props: Any, body: bytes) -> None:
        got.append(body)
        c.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    wait_for(connection, lambda: len(got) == 4, what="all deliveries one at a time")
    assert got == [b"0", b"1", b"2", b"3"]


def test_multiple_ack_opens_window_for_all(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 6)
    ch.basic_qos(prefetch_count=3)
    holder = Holder()
    ch.basic_consume(queue, holder)
    wait_for(connection, lambda: len(holder.tags) == 3, what="first window")
    ch.basic_ack(holder.tags[-1], multiple=True)
    wait_for(connection, lambda: len(holder.tags) == 6, what="second window")
    assert queue_counts(ch, queue, (0, 1)) == (0, 1)


def test_prefetch_zero_is_unlimited(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 50)
    ch.basic_qos(prefetch_count=0)
    holder = Holder()
    ch.basic_consume(queue, holder)
    wait_for(connection, lambda: len(holder.tags) == 50, what="everything")


def test_qos_applies_to_new_consumers_only(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 6)
    ch.basic_qos(prefetch_count=1)
    holder = Holder()
    ch.basic_consume(queue, holder)
    wait_for(connection, lambda: len(holder.tags) == 1, what="first delivery")
    ch.basic_qos(prefetch_count=10)
    ch.basic_ack(holder.tags[0])
    wait_for(connection, lambda: len(holder.tags) == 2, what="next delivery")
    assert queue_counts(ch, queue, (4, 1)) == (4, 1)
    assert len(holder.tags) == 2


def test_no_ack_consumer_ignores_prefetch(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 10)
    ch.basic_qos(prefetch_count=1)
    got: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    wait_for(connection, lambda: len(got) == 10, what="everything")


def test_get_is_not_limited_by_prefetch(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    ch.basic_qos(prefetch_count=1, global_qos=True)
    for _ in range(3):
        assert ch.basic_get(queue)[0] is not None
