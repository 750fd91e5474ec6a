"""Sender-selected distribution: the CC and BCC headers add routing keys; BCC never reaches a consumer."""

from __future__ import annotations

from typing import Any

import pika

from tests.integration.conftest import Resources, get_message


def _queues(channel: Any, resources: Resources, exchange: str, keys: list[str]) -> list[str]:
    names = []
    for key in keys:
        queue = resources.queue()
        channel.queue_declare(queue)
        channel.queue_bind(queue, exchange, key)
        names.append(queue)
    return names


def test_cc_routes_to_more_keys_and_stays(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "direct")
    main, copy = _queues(channel, resources, exchange, ["main", "copy"])
    channel.basic_publish(exchange, "main", b"m", pika.BasicProperties(headers={"CC": ["copy"]}))
    for queue in (main, copy):
        method, props, body = get_message(channel, queue, auto_ack=True)
        assert body == b"m"
        assert method.routing_key == "main"
        assert props.headers == {"CC": ["copy"]}


def test_bcc_routes_and_is_stripped(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "direct")
    main, hidden = _queues(channel, resources, exchange, ["main", "hidden"])
    channel.basic_publish(
        exchange, "main", b"m", pika.BasicProperties(headers={"BCC": ["hidden"], "keep": "yes"})
    )
    for queue in (main, hidden):
        _, props, body = get_message(channel, queue, auto_ack=True)
        assert body == b"m"
        assert props.headers == {"keep": "yes"}


def test_a_queue_named_twice_gets_one_copy(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "direct")
    [queue] = _queues(channel, resources, exchange, ["k"])
    channel.basic_publish(exchange, "k", b"m", pika.BasicProperties(headers={"CC": ["k"], "BCC": ["k"]}))
    get_message(channel, queue, auto_ack=True)
    assert channel.basic_get(queue, auto_ack=True)[0] is None


def test_cc_on_the_default_exchange(channel: Any, resources: Resources) -> None:
    first = resources.queue()
    second = resources.queue()
    for queue in (first, second):
        channel.queue_declare(queue)
    channel.basic_publish("", first, b"m", pika.BasicProperties(headers={"CC": [second]}))
    for queue in (first, second):
        assert get_message(channel, queue, auto_ack=True)[2] == b"m"
