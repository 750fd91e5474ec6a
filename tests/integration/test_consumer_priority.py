"""Consumer priorities (x-priority on basic.consume) and ignored HA arguments."""

from __future__ import annotations

from typing import Any

import pika

from tests.integration.conftest import Resources, wait_for


def test_higher_priority_consumer_is_served_first(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    high: list[bytes] = []
    low: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: low.append(b), auto_ack=True, arguments={"x-priority": 0})
    ch.basic_consume(queue, lambda c, m, p, b: high.append(b), auto_ack=True, arguments={"x-priority": 10})
    for i in range(5):
        ch.basic_publish("", queue, str(i).encode())
    wait_for(connection, lambda: len(high) == 5, what="five deliveries")
    assert low == []


def test_lower_priority_gets_messages_when_the_higher_is_full(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=1)
    high: list[bytes] = []
    low: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: low.append(b), arguments={"x-priority": -5})
    ch.basic_consume(queue, lambda c, m, p, b: high.append(b), arguments={"x-priority": 5})
    for i in range(2):
        ch.basic_publish("", queue, str(i).encode())
    wait_for(connection, lambda: len(high) + len(low) == 2, what="two deliveries")
    assert (high, low) == ([b"0"], [b"1"])


def test_cancel_on_ha_failover_is_ignored(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch: Any = connection.channel()
    ch.queue_declare(queue)
    got: list[bytes] = []
    ch.basic_consume(
        queue, lambda c, m, p, b: got.append(b), auto_ack=True, arguments={"x-cancel-on-ha-failover": True}
    )
    ch.basic_publish("", queue, b"m")
    wait_for(connection, lambda: got == [b"m"], what="the delivery")
