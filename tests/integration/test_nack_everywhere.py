"""A publish nacked because one of its queues refused it (x-overflow reject-publish) reaches none of them.

RabbitMQ still delivers such a message to the other queues it was routed to, so a publisher that retries
after the nack duplicates it there; OtterMQ's rule is that a nacked message is never delivered (issue: "a
nacked message must not be delivered"). Without confirms there is no nack, and the other queues get it, as
in RabbitMQ. The persistent case is also checked across a restart.
"""

from __future__ import annotations

import os
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.integration.conftest import Resources, queue_counts
from tests.integration.test_faults import LiveBroker

PERSISTENT = pika.BasicProperties(delivery_mode=2)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="RabbitMQ delivers to the queues that accepted it"
)


def fanout(
    channel: pika.adapters.blocking_connection.BlockingChannel, resources: Resources, durable: bool = False
) -> tuple[str, str, str]:
    """A fanout exchange bound to a full reject-publish queue and to an ordinary queue."""
    exchange, full, other = resources.exchange(), resources.queue(), resources.queue()
    channel.exchange_declare(exchange, "fanout", durable=durable)
    limit = {"x-max-length": 1, "x-overflow": "reject-publish"}
    channel.queue_declare(full, durable=durable, arguments=limit)
    channel.queue_declare(other, durable=durable)
    channel.queue_bind(full, exchange)
    channel.queue_bind(other, exchange)
    return exchange, full, other


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
def test_a_refused_confirmed_publish_reaches_no_queue(
    connection: pika.BlockingConnection, resources: Resources, persistent: bool
) -> None:
    ch = connection.channel()
    exchange, full, other = fanout(ch, resources)
    ch.confirm_delivery()
    props = PERSISTENT if persistent else None
    ch.basic_publish(exchange, "", b"first", props)  # fills `full`
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish(exchange, "", b"second", props)
    assert queue_counts(ch, full, (1, 0)) == (1, 0)
    assert queue_counts(ch, other, (1, 0)) == (1, 0)
    assert ch.basic_get(other, auto_ack=True)[2] == b"first"


def test_without_confirms_the_other_queues_get_it(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    ch = connection.channel()
    exchange, full, other = fanout(ch, resources)
    ch.basic_publish(exchange, "", b"first")
    ch.basic_publish(exchange, "", b"second")
    assert queue_counts(ch, full, (1, 0)) == (1, 0)
    assert queue_counts(ch, other, (2, 0)) == (2, 0)


def test_a_refused_persistent_publish_does_not_come_back_after_a_restart(tmp_path: Path) -> None:
    live = LiveBroker(tmp_path / "data")
    try:
        conn = pika.BlockingConnection(live.params())
        ch = conn.channel()
        ch.exchange_declare("fan", "fanout", durable=True)
        ch.queue_declare("full", durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
        ch.queue_declare("other", durable=True)
        ch.queue_bind("full", "fan")
        ch.queue_bind("other", "fan")
        ch.confirm_delivery()
        ch.basic_publish("fan", "", b"first", PERSISTENT)
        with pytest.raises(pika.exceptions.NackError):
            ch.basic_publish("fan", "", b"second", PERSISTENT)
        conn.close()
    finally:
        live.close()
    restarted = LiveBroker(tmp_path / "data")
    try:
        conn = pika.BlockingConnection(restarted.params())
        ch = conn.channel()
        for queue in ("full", "other"):
            bodies = []
            while (got := ch.basic_get(queue, auto_ack=True))[0] is not None:
                bodies.append(got[2])
            assert bodies == [b"first"], queue
        conn.close()
    finally:
        restarted.close()
