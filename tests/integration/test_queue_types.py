"""x-queue-type: classic, quorum and stream are what they say; anything else is refused, nothing downgraded.

The reply codes and texts are RabbitMQ 3.10.8's, recorded side by side (these tests pass against it with
OTTERMQ_TEST_URL=amqp://guest:guest@127.0.0.1:5682/%2F).
"""

from __future__ import annotations

from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo, Resources, broker_error, get_message, queue_counts, unique


def _declare(broker: BrokerInfo, name: str, **kwargs: Any) -> tuple[int, str]:
    connection = pika.BlockingConnection(broker.params())
    try:
        return broker_error(lambda: connection.channel().queue_declare(name, **kwargs))
    finally:
        if connection.is_open:
            connection.close()


@pytest.mark.parametrize("kind", ["quorum", "stream"])
def test_quorum_and_stream_queues_are_durable_only(broker: BrokerInfo, kind: str) -> None:
    name = unique(kind)
    args = {"x-queue-type": kind}
    resource = f"queue '{name}' in vhost '/'"
    assert _declare(broker, name, durable=False, arguments=args) == (
        406,
        f"PRECONDITION_FAILED - invalid property 'non-durable' for {resource}",
    )
    assert _declare(broker, name, durable=True, exclusive=True, arguments=args) == (
        406,
        f"PRECONDITION_FAILED - invalid property 'exclusive-owner' for {resource}",
    )
    assert _declare(broker, name, durable=True, auto_delete=True, arguments=args) == (
        406,
        f"PRECONDITION_FAILED - invalid property 'auto-delete' for {resource}",
    )
    # auto-delete is reported before exclusive, exclusive before non-durable.
    assert _declare(broker, name, durable=True, exclusive=True, auto_delete=True, arguments=args)[1].endswith(
        f"'auto-delete' for {resource}"
    )
    assert _declare(broker, name, durable=False, exclusive=True, arguments=args)[1].endswith(
        f"'exclusive-owner' for {resource}"
    )
    module = f"rabbit_{kind}_queue"
    assert _declare(broker, "", durable=True, arguments=args) == (
        406,
        f"PRECONDITION_FAILED - Cannot declare a server-named queue for type {module}",
    )


def test_unknown_queue_types_are_refused(broker: BrokerInfo) -> None:
    name = unique("bogus")
    resource = f"queue '{name}' in vhost '/'"
    assert _declare(broker, name, durable=True, arguments={"x-queue-type": "bogus"}) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-queue-type' for {resource}: "
        "\"unsupported queue type 'bogus'\"",
    )
    assert _declare(broker, name, durable=False, arguments={"x-queue-type": 5}) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-queue-type' for {resource}: {{unacceptable_type,signedint}}",
    )


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        ("quorum", "x-max-priority", 5),
        ("quorum", "x-queue-mode", "lazy"),
        ("quorum", "x-max-age", "1h"),
        ("stream", "x-max-length", 5),
        ("stream", "x-message-ttl", 5),
        ("stream", "x-dead-letter-exchange", "x"),
        ("stream", "x-expires", 5000),
        ("stream", "x-single-active-consumer", True),
        ("stream", "x-overflow", "reject-publish"),
        ("stream", "x-delivery-limit", 3),
        ("classic", "x-max-age", "1h"),
        ("classic", "x-stream-max-segment-size-bytes", 5),
    ],
)
def test_arguments_a_type_does_not_support(broker: BrokerInfo, kind: str, key: str, value: Any) -> None:
    name = unique("unsupported")
    code, text = _declare(broker, name, durable=True, arguments={"x-queue-type": kind, key: value})
    assert (code, text) == (
        406,
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{name}' in vhost '/' of queue type "
        f"rabbit_{kind}_queue",
    )


def test_redeclare_with_another_type(channel: Any, resources: Resources, broker: BrokerInfo) -> None:
    classic = resources.queue()
    channel.queue_declare(classic, durable=True)
    channel.queue_declare(classic, durable=True, arguments={"x-queue-type": "classic"})  # the same type
    assert _declare(broker, classic, durable=True, arguments={"x-queue-type": "quorum"}) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{classic}' in vhost '/': "
        "received the value 'quorum' of type 'longstr' but current is none",
    )
    quorum = resources.queue()
    channel.queue_declare(quorum, durable=True, arguments={"x-queue-type": "quorum"})
    assert _declare(broker, quorum, durable=True, arguments={"x-queue-type": "classic"}) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{quorum}' in vhost '/': "
        "received 'classic' but current is 'quorum'",
    )
    assert _declare(broker, quorum, durable=True) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{quorum}' in vhost '/': "
        "received none but current is the value 'quorum' of type 'longstr'",
    )


def test_quorum_deliveries_count_and_the_limit_dead_letters(channel: Any, resources: Resources) -> None:
    dlx = resources.exchange()
    dead = resources.queue()
    queue = resources.queue()
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx)
    channel.queue_declare(
        queue,
        durable=True,
        arguments={"x-queue-type": "quorum", "x-delivery-limit": 1, "x-dead-letter-exchange": dlx},
    )
    channel.basic_publish("", queue, b"poison")
    seen = []
    for _ in range(2):
        method, props, _ = get_message(channel, queue)
        seen.append((method.redelivered, props.headers))
        channel.basic_reject(method.delivery_tag, requeue=True)
    # RabbitMQ 3.10: every delivery from a quorum queue says how often it came back, 0 the first time.
    assert seen == [(False, {"x-delivery-count": 0}), (True, {"x-delivery-count": 1})]
    _, props, body = get_message(channel, dead, auto_ack=True)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
    assert props.headers["x-first-death-reason"] == "delivery_limit"
    assert queue_counts(channel, queue, (0, 0)) == (0, 0)


def test_quorum_without_a_limit_counts_and_keeps(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.basic_publish("", queue, b"m")
    counts = []
    for _ in range(3):
        method, props, _ = get_message(channel, queue)
        counts.append(props.headers["x-delivery-count"])
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert counts == [0, 1, 2]
    get_message(channel, queue, auto_ack=True)


def test_quorum_limit_zero_drops_on_the_first_return(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 0})
    channel.basic_publish("", queue, b"m")
    method, _, _ = get_message(channel, queue)
    channel.basic_reject(method.delivery_tag, requeue=True)
    assert queue_counts(channel, queue, (0, 0)) == (0, 0)


def test_queue_type_in_the_listing(broker: BrokerInfo, channel: Any, resources: Resources) -> None:
    if broker.external or broker.http_port is None:
        pytest.skip("reads OtterMQ's management API")
    import json
    import urllib.request

    names = {kind: resources.queue() for kind in ("classic", "quorum")}
    for kind, name in names.items():
        channel.queue_declare(name, durable=True, arguments={"x-queue-type": kind})
    request = urllib.request.Request(f"http://127.0.0.1:{broker.http_port}/api/queues/%2F")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
    with urllib.request.urlopen(request, timeout=5) as answer:
        rows = {row["name"]: row for row in json.load(answer)}
    assert {kind: rows[name]["type"] for kind, name in names.items()} == {
        "classic": "classic",
        "quorum": "quorum",
    }
