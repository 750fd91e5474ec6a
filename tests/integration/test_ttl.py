"""Message TTL: x-message-ttl per queue, the `expiration` property per message, and their odd cases."""

from __future__ import annotations

import time
from typing import Any

import pika

from tests.integration.conftest import Resources, broker_error, get_message, queue_counts, wait_for


def _publish(channel: Any, queue: str, body: bytes, **props: Any) -> None:
    channel.basic_publish("", queue, body, pika.BasicProperties(**props) if props else None)


def test_queue_ttl_expires_ready_messages(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 200})
    for i in range(3):
        _publish(channel, queue, str(i).encode())
    time.sleep(0.4)
    method, _, _ = channel.basic_get(queue, auto_ack=True)
    assert method is None


def test_expired_messages_are_removed_without_a_reader(channel: Any, resources: Resources) -> None:
    # The proactive sweep: nobody reads the queue, yet its count drops to zero.
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 100})
    for i in range(5):
        _publish(channel, queue, str(i).encode())
    assert queue_counts(channel, queue, (0, 0), timeout=5.0) == (0, 0)


def test_per_message_expiration(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue)
    _publish(channel, queue, b"short", expiration="100")
    _publish(channel, queue, b"long", expiration="60000")
    time.sleep(0.3)
    _, props, body = get_message(channel, queue, auto_ack=True)
    assert body == b"long"
    assert props.expiration == "60000"
    assert channel.basic_get(queue, auto_ack=True)[0] is None


def test_the_shorter_of_queue_and_message_ttl_wins(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 60000})
    _publish(channel, queue, b"short", expiration="100")
    _publish(channel, queue, b"kept")
    time.sleep(0.3)
    assert get_message(channel, queue, auto_ack=True)[2] == b"kept"


def test_expiration_zero_reaches_a_waiting_consumer(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    got: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    _publish(ch, queue, b"now", expiration="0")
    wait_for(connection, lambda: got == [b"now"], what="the delivery")


def test_expiration_zero_without_a_consumer_expires(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue)
    _publish(channel, queue, b"never", expiration="0")
    _publish(channel, queue, b"kept")
    assert get_message(channel, queue, auto_ack=True)[2] == b"kept"
    assert channel.basic_get(queue, auto_ack=True)[0] is None


def test_ttl_of_a_requeued_message_still_counts(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 300})
    _publish(channel, queue, b"m")
    method, _, _ = get_message(channel, queue)
    time.sleep(0.5)
    channel.basic_nack(method.delivery_tag, requeue=True)
    assert channel.basic_get(queue, auto_ack=True)[0] is None


def test_requeued_message_within_its_ttl_comes_back(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-message-ttl": 60000})
    _publish(channel, queue, b"m")
    method, _, _ = get_message(channel, queue)
    channel.basic_nack(method.delivery_tag, requeue=True)
    again, _, body = get_message(channel, queue, auto_ack=True)
    assert body == b"m" and again.redelivered


def test_invalid_expiration_is_refused(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    for value, reason in (
        ("abc", "no_integer"),
        ("-5", "{value_negative,-5}"),
        ("12x", '{leftover_string,"x"}'),
    ):
        ch = connection.channel()
        ch.queue_declare(queue)

        def publish(ch: Any = ch, value: str = value) -> None:
            _publish(ch, queue, b"m", expiration=value)
            ch.basic_get(queue)

        assert broker_error(publish) == (
            406,
            f"PRECONDITION_FAILED - invalid expiration '{value}': {reason}",
        )
