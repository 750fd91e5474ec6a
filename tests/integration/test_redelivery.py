"""Redelivery between consumers: a closed channel's unacked messages go to the others, flagged redelivered."""

from __future__ import annotations

from typing import Any

import pika

from tests.integration.conftest import BrokerInfo, Resources, queue_counts, wait_for


def test_unacked_move_to_other_consumer(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch_a, ch_b = connection.channel(), connection.channel()
    ch_a.queue_declare(queue)
    ch_a.basic_qos(prefetch_count=3)
    held: list[bytes] = []
    ch_a.basic_consume(queue, lambda c, m, p, b: held.append(b))
    for i in range(3):
        ch_b.basic_publish("", queue, str(i).encode())
    wait_for(connection, lambda: len(held) == 3, what="first consumer's window")
    got: list[tuple[bytes, bool]] = []

    def on_message(c: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((body, method.redelivered))
        c.basic_ack(method.delivery_tag)

    ch_b.basic_consume(queue, on_message)
    ch_b.basic_publish("", queue, b"3")
    wait_for(connection, lambda: len(got) == 1, what="new message to the second consumer")
    ch_a.close()
    wait_for(connection, lambda: len(got) == 4, what="redeliveries")
    assert got == [(b"3", False), (b"0", True), (b"1", True), (b"2", True)]


def test_nack_requeue_redelivers_to_same_consumer(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, b"retry")
    seen: list[bool] = []

    def on_message(c: Any, method: Any, props: Any, body: bytes) -> None:
        seen.append(method.redelivered)
        if len(seen) < 3:
            c.basic_nack(method.delivery_tag, requeue=True)
        else:
            c.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    wait_for(connection, lambda: len(seen) == 3, what="three attempts")
    assert seen == [False, True, True]
    assert queue_counts(ch, queue, (0, 1)) == (0, 1)


def test_many_unacked_then_ack_all(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    count = 2000
    for _ in range(count):
        ch.basic_publish("", queue, b"m")
    tags: list[int] = []
    ch.basic_consume(queue, lambda c, m, p, b: tags.append(m.delivery_tag))
    wait_for(connection, lambda: len(tags) == count, timeout=20, what="all deliveries")
    assert tags == list(range(1, count + 1))
    ch.basic_ack(tags[-1], multiple=True)
    ch.close()
    assert queue_counts(connection.channel(), queue, (0, 0)) == (0, 0)


def test_many_consumers_share_a_queue(broker: BrokerInfo, resources: Resources) -> None:
    queue = resources.queue()
    conn = pika.BlockingConnection(broker.params())
    try:
        producer = conn.channel()
        producer.queue_declare(queue)
        got: dict[int, int] = {}
        for n in range(50):
            ch = conn.channel()
            ch.basic_consume(
                queue,
                lambda c, m, p, b, n=n: got.__setitem__(n, got.get(n, 0) + 1),
                auto_ack=True,
            )
        for _ in range(500):
            producer.basic_publish("", queue, b"x")
        wait_for(conn, lambda: sum(got.values()) == 500, what="all deliveries")
        assert sorted(got) == list(range(50))
        assert set(got.values()) == {10}
    finally:
        conn.close()
