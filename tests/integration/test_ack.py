"""basic.ack / nack / reject / recover: single and multiple, errors, the redelivered flag, order."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from pika import spec

from tests.integration.conftest import BrokerInfo, Resources, broker_error, drain, queue_counts, wait_for


def _queue_with(ch: Any, count: int) -> str:
    queue: str = ch.queue_declare("", exclusive=True).method.queue
    for i in range(count):
        ch.basic_publish("", queue, str(i).encode())
    return queue


def _get_all(ch: Any, queue: str, count: int) -> list[int]:
    """basic.get `count` messages without ack; return their delivery tags."""
    tags = []
    for _ in range(count):
        method, _, _ = ch.basic_get(queue)
        tags.append(method.delivery_tag)
    return tags


def _after_close(connection: pika.BlockingConnection, queue: str, ready: int) -> Any:
    """A fresh channel, once `queue` holds `ready` messages (a broker may requeue after close-ok)."""
    ch = connection.channel()
    queue_counts(ch, queue, (ready, 0))
    return ch


def _bodies_and_flags(ch: Any, queue: str) -> list[tuple[bytes, bool]]:
    out: list[tuple[bytes, bool]] = []
    while True:
        method, _, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body, method.redelivered))


def test_ack_single(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    tags = _get_all(ch, queue, 3)
    ch.basic_ack(tags[1])
    ch.close()
    assert _bodies_and_flags(_after_close(connection, queue, 2), queue) == [(b"0", True), (b"2", True)]


def test_ack_multiple(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 4)
    tags = _get_all(ch, queue, 4)
    ch.basic_ack(tags[2], multiple=True)
    ch.close()
    assert _bodies_and_flags(_after_close(connection, queue, 1), queue) == [(b"3", True)]


def test_ack_zero_multiple_acks_everything(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    _get_all(ch, queue, 3)
    ch.basic_ack(0, multiple=True)
    ch.close()
    assert _bodies_and_flags(connection.channel(), queue) == []


def test_nack_single_requeue_goes_back_to_head(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    tags = _get_all(ch, queue, 1)
    ch.basic_nack(tags[0], requeue=True)
    assert _bodies_and_flags(ch, queue) == [(b"0", True), (b"1", False), (b"2", False)]


def test_nack_multiple_requeue_keeps_order(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 5)
    tags = _get_all(ch, queue, 3)
    ch.basic_nack(tags[2], multiple=True, requeue=True)
    assert _bodies_and_flags(ch, queue) == [
        (b"0", True),
        (b"1", True),
        (b"2", True),
        (b"3", False),
        (b"4", False),
    ]


def test_nack_multiple_without_requeue_drops(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    tags = _get_all(ch, queue, 2)
    ch.basic_nack(tags[1], multiple=True, requeue=False)
    assert _bodies_and_flags(ch, queue) == [(b"2", False)]
    ch.close()
    assert _bodies_and_flags(connection.channel(), queue) == []


def test_reject(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 2)
    tags = _get_all(ch, queue, 2)
    ch.basic_reject(tags[0], requeue=False)
    ch.basic_reject(tags[1], requeue=True)
    assert _bodies_and_flags(ch, queue) == [(b"1", True)]


def test_requeue_of_out_of_order_acks_keeps_queue_order(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 6)
    tags = _get_all(ch, queue, 4)
    ch.basic_reject(tags[2], requeue=True)
    ch.basic_reject(tags[0], requeue=True)
    ch.basic_ack(tags[1])
    ch.close()
    assert _bodies_and_flags(_after_close(connection, queue, 5), queue) == [
        (b"0", True),
        (b"2", True),
        (b"3", True),
        (b"4", False),
        (b"5", False),
    ]


@pytest.mark.parametrize(
    "settle",
    [
        lambda ch: ch.basic_ack(7),
        lambda ch: ch.basic_nack(7),
        lambda ch: ch.basic_reject(7),
        lambda ch: ch.basic_ack(7, multiple=True),
    ],
    ids=["ack", "nack", "reject", "ack-multiple"],
)
def test_unknown_delivery_tag_is_406(connection: pika.BlockingConnection, settle: Any) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 1)

    def run() -> None:
        settle(ch)
        ch.basic_get(queue)  # a round trip: the close arrives here

    assert broker_error(run) == (406, "PRECONDITION_FAILED - unknown delivery tag 7")
    assert connection.is_open
    connection.channel()


@pytest.mark.parametrize("multiple", [False, True], ids=["single", "multiple"])
def test_tag_beyond_outstanding_is_406(connection: pika.BlockingConnection, multiple: bool) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    _get_all(ch, queue, 2)

    def run() -> None:
        ch.basic_ack(5, multiple=multiple)
        ch.basic_get(queue)

    assert broker_error(run) == (406, "PRECONDITION_FAILED - unknown delivery tag 5")


def test_ack_zero_single_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 2)
    _get_all(ch, queue, 1)

    def run() -> None:
        ch.basic_ack(0)
        ch.basic_get(queue)

    assert broker_error(run) == (406, "PRECONDITION_FAILED - unknown delivery tag 0")


def test_nack_zero_multiple_settles_everything(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    _get_all(ch, queue, 2)
    ch.basic_nack(0, multiple=True, requeue=False)
    ch.close()
    assert _bodies_and_flags(_after_close(connection, queue, 1), queue) == [(b"2", False)]


def test_double_ack_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 2)
    tag = _get_all(ch, queue, 1)[0]
    ch.basic_ack(tag)

    def again() -> None:
        ch.basic_ack(tag)
        ch.basic_get(queue)

    assert broker_error(again) == (406, f"PRECONDITION_FAILED - unknown delivery tag {tag}")


def test_ack_of_auto_acked_delivery_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 2)
    method, _, _ = ch.basic_get(queue, auto_ack=True)

    def ack() -> None:
        ch.basic_ack(method.delivery_tag)
        ch.basic_get(queue)

    assert broker_error(ack) == (406, f"PRECONDITION_FAILED - unknown delivery tag {method.delivery_tag}")


def test_ack_on_other_channel_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 1)
    tag = _get_all(ch, queue, 1)[0]
    other = connection.channel()

    def ack() -> None:
        other.basic_ack(tag)
        other.queue_declare(queue, passive=True)

    assert broker_error(ack) == (406, f"PRECONDITION_FAILED - unknown delivery tag {tag}")
    # The message is still unacked on its own channel.
    ch.basic_ack(tag)


def test_channel_error_requeues_unacked(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 2)
    _get_all(ch, queue, 2)

    def bad() -> None:
        ch.basic_ack(99)
        ch.basic_get(queue)

    broker_error(bad)
    assert _bodies_and_flags(_after_close(connection, queue, 2), queue) == [(b"0", True), (b"1", True)]


def test_redelivered_after_channel_close(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    got: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(b))
    wait_for(connection, lambda: len(got) == 3, what="deliveries")
    ch.close()
    assert _bodies_and_flags(_after_close(connection, queue, 3), queue) == [
        (b"0", True),
        (b"1", True),
        (b"2", True),
    ]


def test_redelivered_after_connection_close(
    broker: BrokerInfo,
    connection: pika.BlockingConnection,
    resources: Resources,
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    for i in range(3):
        ch.basic_publish("", queue, str(i).encode())
    consumer = pika.BlockingConnection(broker.params())
    try:
        got: list[bytes] = []
        consumer.channel().basic_consume(queue, lambda c, m, p, b: got.append(b))
        wait_for(consumer, lambda: len(got) == 3, what="deliveries")
    finally:
        consumer.close()
    assert _bodies_and_flags(_after_close(connection, queue, 3), queue) == [
        (b"0", True),
        (b"1", True),
        (b"2", True),
    ]


def test_recover_requeues_with_redelivered(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 2)
    got: list[tuple[bytes, bool]] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append((b, m.redelivered)))
    wait_for(connection, lambda: len(got) == 2, what="deliveries")
    ch.basic_recover(requeue=True)
    wait_for(connection, lambda: len(got) == 4, what="redeliveries")
    assert got == [(b"0", False), (b"1", False), (b"0", True), (b"1", True)]


def test_recover_leaves_acked_alone(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 3)
    tags = _get_all(ch, queue, 3)
    ch.basic_ack(tags[1])
    ch.basic_recover(requeue=True)
    assert _bodies_and_flags(ch, queue) == [(b"0", True), (b"2", True)]
    assert queue_counts(ch, queue, (0, 0)) == (0, 0)


def test_settled_messages_never_come_back(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 10)
    got: list[int] = []

    def on_message(c: Any, method: Any, props: Any, body: bytes) -> None:
        got.append(int(body))
        c.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    wait_for(connection, lambda: len(got) == 10, what="deliveries")
    ch.close()
    assert drain(connection.channel(), queue) == []
    assert got == list(range(10))


def test_recover_async_requeues(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = _queue_with(ch, 1)
    _get_all(ch, queue, 1)
    # Deprecated and without a reply; pika has no wrapper for it.
    connection._impl._send_method(ch.channel_number, spec.Basic.RecoverAsync(requeue=True))
    method, _, body = ch.basic_get(queue)
    assert (body, method.redelivered, method.delivery_tag) == (b"0", True, 2)


def test_ack_after_queue_deleted_is_fine(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"x")
    tag = _get_all(ch, queue, 1)[0]
    ch.queue_delete(queue)
    ch.basic_ack(tag)
    ch.queue_declare("", exclusive=True)  # a round trip: no error came back
    assert ch.is_open
