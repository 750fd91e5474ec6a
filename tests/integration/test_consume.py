"""basic.consume / basic.cancel: tags, exclusivity, dispatch, cancel notifications."""

from __future__ import annotations

from typing import Any

import pika
from pika import spec

from tests.integration.conftest import Resources, broker_error, queue_counts, unique, wait_for


def _in_exclusive_use(name: str) -> tuple[int, str]:
    return (403, f"ACCESS_REFUSED - queue '{name}' in vhost '/' in exclusive use")


def test_consume_and_cancel(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    got: list[bytes] = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", queue, b"one")
    wait_for(connection, lambda: got == [b"one"], what="delivery")
    ch.basic_cancel(tag)
    ch.basic_publish("", queue, b"two")
    assert queue_counts(ch, queue, (1, 0)) == (1, 0)
    assert got == [b"one"]


def test_deliver_fields(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    key = unique("k")
    ch.queue_bind(queue, "amq.direct", key)
    got: list[Any] = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: got.append(m), consumer_tag="my-tag")
    assert tag == "my-tag"
    ch.basic_publish("amq.direct", key, b"a")
    ch.basic_publish("amq.direct", key, b"b")
    wait_for(connection, lambda: len(got) == 2, what="deliveries")
    assert [(m.consumer_tag, m.delivery_tag, m.redelivered, m.exchange, m.routing_key) for m in got] == [
        ("my-tag", 1, False, "amq.direct", key),
        ("my-tag", 2, False, "amq.direct", key),
    ]


def test_server_generated_consumer_tag(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    # pika always picks a tag itself: send an empty one through its channel implementation.
    replies: list[Any] = []
    ch._impl._rpc(spec.Basic.Consume(queue=queue, consumer_tag=""), replies.append, [spec.Basic.ConsumeOk])
    wait_for(connection, lambda: len(replies) == 1, what="consume-ok")
    tag = replies[0].method.consumer_tag
    assert tag.startswith("amq.ctag-")
    assert len(tag) > len("amq.ctag-") + 10
    assert queue_counts(ch, queue, (0, 1)) == (0, 1)


def test_round_robin_between_consumers(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    got: dict[str, list[int]] = {"a": [], "b": []}
    ch.basic_consume(queue, lambda c, m, p, b: got["a"].append(int(b)), auto_ack=True, consumer_tag="a")
    ch.basic_consume(queue, lambda c, m, p, b: got["b"].append(int(b)), auto_ack=True, consumer_tag="b")
    for i in range(10):
        ch.basic_publish("", queue, str(i).encode())
    wait_for(connection, lambda: len(got["a"]) + len(got["b"]) == 10, what="deliveries")
    assert sorted(got["a"] + got["b"]) == list(range(10))
    assert len(got["a"]) == len(got["b"]) == 5


def test_consume_missing_queue_is_404(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    name = unique("q")
    assert broker_error(lambda: ch.basic_consume(name, lambda *a: None)) == (
        404,
        f"NOT_FOUND - no queue '{name}' in vhost '/'",
    )


def test_exclusive_consumer_blocks_others(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    ch.basic_consume(queue, lambda *a: None, exclusive=True)
    other = connection.channel()
    assert broker_error(lambda: other.basic_consume(queue, lambda *a: None)) == _in_exclusive_use(queue)
    assert connection.is_open
    # The same channel may not add a second consumer either.
    assert broker_error(lambda: ch.basic_consume(queue, lambda *a: None)) == _in_exclusive_use(queue)


def test_exclusive_consume_when_others_exist(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    ch.basic_consume(queue, lambda *a: None)
    other = connection.channel()
    assert broker_error(
        lambda: other.basic_consume(queue, lambda *a: None, exclusive=True)
    ) == _in_exclusive_use(queue)


def test_exclusive_consumer_released_by_cancel(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    tag = ch.basic_consume(queue, lambda *a: None, exclusive=True)
    ch.basic_cancel(tag)
    connection.channel().basic_consume(queue, lambda *a: None, exclusive=True)


def test_duplicate_consumer_tag_is_530(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume(queue, lambda *a: None, consumer_tag="dup")

    def consume_again() -> None:
        # pika refuses a duplicate tag itself: send the method frame through its channel implementation.
        ch._impl._send_method(spec.Basic.Consume(queue=queue, consumer_tag="dup"))
        wait_for(connection, lambda: False, timeout=5, what="connection.close")

    assert broker_error(consume_again, pika.exceptions.ConnectionClosedByBroker) == (
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 'dup'",
    )


def test_same_tag_on_two_channels_is_fine(connection: pika.BlockingConnection) -> None:
    ch1, ch2 = connection.channel(), connection.channel()
    queue = ch1.queue_declare("", exclusive=True).method.queue
    ch1.basic_consume(queue, lambda *a: None, consumer_tag="shared")
    ch2.basic_consume(queue, lambda *a: None, consumer_tag="shared")
    assert queue_counts(ch1, queue, (0, 2)) == (0, 2)


def test_cancel_unknown_tag_is_ok(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    # pika only sends basic.cancel for tags it knows: send it through the channel implementation.
    cancelled: list[Any] = []
    ch._impl._rpc(spec.Basic.Cancel(consumer_tag="never-seen"), cancelled.append, [spec.Basic.CancelOk])
    wait_for(connection, lambda: len(cancelled) == 1, what="cancel-ok")
    assert cancelled[0].method.consumer_tag == "never-seen"
    assert ch.is_open


def test_unacked_of_cancelled_consumer_can_still_be_acked(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    tags: list[int] = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: tags.append(m.delivery_tag))
    ch.basic_publish("", queue, b"x")
    wait_for(connection, lambda: len(tags) == 1, what="delivery")
    ch.basic_cancel(tag)
    ch.basic_ack(tags[0])
    assert queue_counts(ch, queue, (0, 0)) == (0, 0)
    assert ch.is_open


def test_cancel_notification_when_queue_deleted(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    notified: list[Any] = []
    ch.add_on_cancel_callback(notified.append)
    tag = ch.basic_consume(queue, lambda *a: None)
    connection.channel().queue_delete(queue)
    wait_for(connection, lambda: len(notified) == 1, what="basic.cancel from the broker")
    assert isinstance(notified[0].method, spec.Basic.Cancel)
    assert notified[0].method.consumer_tag == tag
    assert ch.is_open
    # The channel carries on.
    ch.queue_declare("", exclusive=True)


def test_no_ack_consumer_removes_messages(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    got: list[bytes] = []
    tag = ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    for i in range(5):
        ch.basic_publish("", queue, str(i).encode())
    wait_for(connection, lambda: len(got) == 5, what="deliveries")
    ch.basic_cancel(tag)
    ch.close()
    # Nothing comes back when the channel closes: there was nothing to ack.
    assert queue_counts(connection.channel(), queue, (0, 0)) == (0, 0)
