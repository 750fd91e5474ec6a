"""basic.get: get-ok with counts, get-empty, acks of got messages, errors."""

from __future__ import annotations

import pika

from tests.integration.conftest import broker_error, queue_counts, unique


def test_get_empty(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    assert ch.basic_get(queue) == (None, None, None)


def test_get_ok_fields_and_counts(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", queue, str(i).encode(), pika.BasicProperties(message_id=f"m{i}"))
    seen = []
    for _ in range(3):
        method, props, body = ch.basic_get(queue, auto_ack=False)
        seen.append(
            (
                method.delivery_tag,
                method.redelivered,
                method.exchange,
                method.routing_key,
                method.message_count,
                props.message_id,
                body,
            )
        )
    assert seen == [
        (1, False, "", queue, 2, "m0", b"0"),
        (2, False, "", queue, 1, "m1", b"1"),
        (3, False, "", queue, 0, "m2", b"2"),
    ]
    assert ch.basic_get(queue)[0] is None
    ch.basic_ack(3, multiple=True)
    assert queue_counts(ch, queue, (0, 0)) == (0, 0)


def test_get_auto_ack_removes(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, b"x")
    _, _, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"x"
    ch.close()
    # Closing the channel requeues nothing: the message was settled on get.
    assert connection.channel().basic_get(queue)[0] is None


def test_get_and_consume_share_delivery_tags(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    other = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, b"a")
    ch.basic_publish("", other, b"b")
    assert ch.basic_get(queue)[0].delivery_tag == 1
    assert ch.basic_get(other)[0].delivery_tag == 2


def test_get_missing_queue_is_404(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    name = unique("q")
    assert broker_error(lambda: ch.basic_get(name)) == (404, f"NOT_FOUND - no queue '{name}' in vhost '/'")
    assert connection.is_open
