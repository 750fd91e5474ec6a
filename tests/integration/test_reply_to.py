"""Direct reply-to (amq.rabbitmq.reply-to): RPC without a reply queue, and its errors."""

from __future__ import annotations

from typing import Any

import pika

from tests.integration.conftest import BrokerInfo, Resources, broker_error, get_message, wait_for

REPLY_TO = "amq.rabbitmq.reply-to"


def test_rpc_round_trip(
    connection: pika.BlockingConnection, broker: BrokerInfo, resources: Resources
) -> None:
    requests = resources.queue()
    client = connection.channel()
    client.queue_declare(requests)
    replies: list[tuple[Any, Any, bytes]] = []
    client.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append((m, p, b)), auto_ack=True)
    client.basic_publish("", requests, b"ping", pika.BasicProperties(reply_to=REPLY_TO, correlation_id="42"))

    server_conn = pika.BlockingConnection(broker.params())
    try:
        server = server_conn.channel()
        _, props, body = get_message(server, requests, auto_ack=True)
        assert body == b"ping"
        assert props.reply_to.startswith(REPLY_TO + ".")
        assert len(props.reply_to) > len(REPLY_TO) + 10
        server.basic_publish(
            "", props.reply_to, b"pong", pika.BasicProperties(correlation_id=props.correlation_id)
        )
    finally:
        server_conn.close()
    wait_for(connection, lambda: len(replies) == 1, what="the reply")
    method, reply_props, reply = replies[0]
    assert reply == b"pong"
    assert reply_props.correlation_id == "42"
    assert method.exchange == ""
    assert method.routing_key.startswith(REPLY_TO + ".")


def test_publish_with_reply_to_needs_a_reply_consumer(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue)

    def publish() -> None:
        channel.basic_publish("", queue, b"m", pika.BasicProperties(reply_to=REPLY_TO))
        channel.basic_get(queue)

    assert broker_error(publish) == (406, "PRECONDITION_FAILED - fast reply consumer does not exist")


def test_reply_consumer_must_be_no_ack(channel: Any) -> None:
    assert broker_error(lambda: channel.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)) == (
        406,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge",
    )


def test_only_one_reply_consumer_per_channel(channel: Any) -> None:
    channel.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    assert broker_error(lambda: channel.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)) == (
        406,
        "PRECONDITION_FAILED - reply consumer already set",
    )


def test_replies_after_cancel_are_unroutable(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    requests = resources.queue()
    ch = connection.channel()
    ch.queue_declare(requests)
    tag = ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ch.basic_publish("", requests, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    _, props, _ = get_message(ch, requests, auto_ack=True)
    ch.basic_cancel(tag)
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(b))
    ch.basic_publish("", props.reply_to, b"late", mandatory=True)
    wait_for(connection, lambda: returned == [b"late"], what="the basic.return")
