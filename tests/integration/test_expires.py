"""Queue expiry (x-expires): an unused queue is deleted after the period."""

from __future__ import annotations

import time

import pika

from tests.integration.conftest import BrokerInfo, Resources, broker_error


def test_unused_queue_is_deleted(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue, arguments={"x-expires": 300})
    ch.basic_publish("", queue, b"m")  # messages do not count as use
    # Not polled: a passive declare counts as use too.
    time.sleep(2.0)
    code, text = broker_error(lambda: ch.queue_declare(queue, passive=True))
    assert (code, text) == (404, f"NOT_FOUND - no queue '{queue}' in vhost '/'")


def test_a_consumer_keeps_the_queue(
    connection: pika.BlockingConnection, broker: BrokerInfo, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue, arguments={"x-expires": 300})
    tag = ch.basic_consume(queue, lambda *a: None, auto_ack=True)
    time.sleep(1.5)
    connection.process_data_events(time_limit=0)
    assert ch.queue_declare(queue, passive=True).method.queue == queue
    ch.basic_cancel(tag)
    time.sleep(2.0)
    code, _ = broker_error(lambda: ch.queue_declare(queue, passive=True))
    assert code == 404
