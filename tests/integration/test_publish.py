"""basic.publish: properties round trip, mandatory returns, immediate, ordering, silent drops."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pika
from pika import spec

from tests.integration.conftest import Resources, broker_error, drain, get_message, unique, wait_for


def test_properties_round_trip(channel: Any) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    stamp = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    headers = {
        "str": "värde",
        "int": 42,
        "neg": -7,
        "long": 2**40,
        "bool": True,
        "bytes": b"\x00\xff",
        "decimal": decimal.Decimal("3.14"),
        "time": stamp,
        "list": [1, "two", [3]],
        "table": {"nested": {"deep": "yes"}},
        "void": None,
    }
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="gzip",
        headers=headers,
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="reply.queue",
        expiration="60000",
        message_id="msg-1",
        timestamp=1700000000,
        type="order.created",
        user_id="guest",
        app_id="ottermq-tests",
        cluster_id="c1",
    )
    channel.basic_publish("", queue, b'{"a": 1}', props)
    _, got, body = get_message(channel, queue, auto_ack=True)
    assert body == b'{"a": 1}'
    for name in (
        "content_type",
        "content_encoding",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
        "cluster_id",
    ):
        assert getattr(got, name) == getattr(props, name), name
    assert got.headers == headers


def test_no_properties_and_empty_body(channel: Any) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", queue, b"")
    method, props, body = get_message(channel, queue, auto_ack=True)
    assert body == b""
    assert (method.exchange, method.routing_key, method.redelivered) == ("", queue, False)
    assert props.headers is None and props.delivery_mode is None


def test_user_id_must_match_connection(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue

    def publish() -> None:
        ch.basic_publish("", queue, b"x", pika.BasicProperties(user_id="mallory"))
        ch.basic_get(queue)

    assert broker_error(publish) == (
        406,
        "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'",
    )


def test_mandatory_unroutable_is_returned(connection: pika.BlockingConnection, resources: Resources) -> None:
    exchange = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(exchange, "direct")
    returned: list[tuple[Any, Any, bytes]] = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append((method, props, body)))
    ch.basic_publish(exchange, "nowhere", b"lost", pika.BasicProperties(message_id="m1"), mandatory=True)
    wait_for(connection, lambda: len(returned) == 1, what="basic.return")
    method, props, body = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == (
        312,
        "NO_ROUTE",
        exchange,
        "nowhere",
    )
    assert (props.message_id, body) == ("m1", b"lost")


def test_mandatory_routed_is_not_returned(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda c, m, p, body: returned.append(body))
    ch.basic_publish("", queue, b"routed", mandatory=True)
    ch.basic_publish("", unique("nowhere"), b"unroutable", mandatory=True)
    wait_for(connection, lambda: len(returned) == 1, what="basic.return")
    assert returned == [b"unroutable"]
    assert drain(ch, queue) == [b"routed"]


def test_unroutable_without_mandatory_is_dropped(channel: Any) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_publish("", unique("nowhere"), b"dropped")
    channel.basic_publish("", queue, b"kept")
    assert drain(channel, queue) == [b"kept"]


def test_immediate_is_not_implemented(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    # pika does not offer the flag: send the method frame through its channel implementation.
    publish = spec.Basic.Publish(exchange="", routing_key=queue, immediate=True)

    def send() -> None:
        ch._impl._send_method(publish, (spec.BasicProperties(), b"now"))
        wait_for(connection, lambda: False, timeout=5, what="connection.close")

    code, text = broker_error(send, pika.exceptions.ConnectionClosedByBroker)
    assert (code, text) == (540, "NOT_IMPLEMENTED - immediate=true")


def test_order_preserved(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    count = 2000
    for i in range(count):
        ch.basic_publish("", queue, i.to_bytes(4, "big"))
    got: list[int] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(int.from_bytes(b, "big")), auto_ack=True)
    wait_for(connection, lambda: len(got) == count, what="all messages")
    assert got == list(range(count))


def test_order_preserved_across_exchanges(connection: pika.BlockingConnection) -> None:
    """Per channel, messages reach a queue in publish order whichever exchange routes them."""
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    key = unique("k")
    ch.queue_bind(queue, "amq.direct", key)
    for i in range(300):
        if i % 2:
            ch.basic_publish("amq.direct", key, str(i).encode())
        else:
            ch.basic_publish("", queue, str(i).encode())
    got = [int(b) for b in drain(ch, queue)]
    assert got == list(range(300))
