"""x-delivery-limit with the x-delivery-count header (OtterMQ offers it on every queue; RabbitMQ only on
quorum queues, so these tests run against OtterMQ only)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import BrokerInfo, Resources, get_message, queue_counts


@pytest.fixture(autouse=True)
def _ottermq_only(broker: BrokerInfo) -> None:
    if broker.external:
        pytest.skip("x-delivery-limit on classic queues is an OtterMQ feature")


def test_redeliveries_carry_the_count_then_dead_letter(channel: Any, resources: Resources) -> None:
    dlx = resources.exchange()
    dead = resources.queue()
    queue = resources.queue()
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx)
    channel.queue_declare(queue, arguments={"x-delivery-limit": 2, "x-dead-letter-exchange": dlx})
    channel.basic_publish("", queue, b"poison")
    counts = []
    for _ in range(3):
        method, props, _ = get_message(channel, queue)
        counts.append((props.headers or {}).get("x-delivery-count"))
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert counts == [None, 1, 2]
    _, props, body = get_message(channel, dead, auto_ack=True)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    assert queue_counts(channel, queue, (0, 0)) == (0, 0)


def test_without_a_dead_letter_exchange_the_message_is_dropped(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-delivery-limit": 0})
    channel.basic_publish("", queue, b"poison")
    method, _, _ = get_message(channel, queue)
    channel.basic_reject(method.delivery_tag, requeue=True)
    assert queue_counts(channel, queue, (0, 0)) == (0, 0)


def test_acked_messages_are_not_affected(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-delivery-limit": 1})
    channel.basic_publish("", queue, b"fine")
    method, props, _ = get_message(channel, queue)
    assert props.headers is None
    channel.basic_ack(method.delivery_tag)
    assert queue_counts(channel, queue, (0, 0)) == (0, 0)
