"""Publisher confirms: ordered acks, many outstanding, unroutable messages, returns, mixing with tx."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pika
from pamqp.commands import Basic
from pika import spec

from tests.integration.conftest import BrokerInfo, Resources, broker_error, unique, wait_for


class ConfirmLog:
    """Every basic.ack / basic.nack the broker sends to a confirm-mode channel, in arrival order."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool]] = []

    def __call__(self, frame: Any) -> None:
        method = frame.method
        self.frames.append((method.NAME, method.delivery_tag, method.multiple))

    def covered(self) -> int:
        """The highest delivery tag confirmed so far."""
        return max((tag for _, tag, _ in self.frames), default=0)

    def confirmed_tags(self) -> list[int]:
        """Expand multiple acks into the tags they confirm, checking nothing is confirmed twice."""
        done: list[int] = []
        last = 0
        for name, tag, multiple in self.frames:
            assert name == "Basic.Ack", self.frames
            assert tag > last, f"confirms out of order: {self.frames}"
            done.extend(range(last + 1, tag + 1) if multiple else [tag])
            last = tag
        return done


def _confirm_channel(connection: pika.BlockingConnection) -> tuple[Any, ConfirmLog]:
    """A blocking channel put in confirm mode through its implementation, so publishes need not wait."""
    ch = connection.channel()
    log = ConfirmLog()
    selected: list[Any] = []
    ch._impl.confirm_delivery(ack_nack_callback=log, callback=selected.append)
    wait_for(connection, lambda: bool(selected), what="confirm.select-ok")
    assert isinstance(selected[0].method, spec.Confirm.SelectOk)
    return ch, log


def test_many_outstanding_confirmed_in_order(connection: pika.BlockingConnection) -> None:
    ch, log = _confirm_channel(connection)
    queue = ch.queue_declare("", exclusive=True).method.queue
    count = 1000
    for i in range(count):
        ch._impl.basic_publish("", queue, str(i).encode())
    wait_for(connection, lambda: log.covered() == count, what="all confirms")
    if not any(multiple for _, _, multiple in log.frames):
        assert len(log.frames) == count
    assert log.confirmed_tags() == list(range(1, count + 1))


def test_unroutable_is_acked(connection: pika.BlockingConnection, resources: Resources) -> None:
    exchange = resources.exchange()
    ch, log = _confirm_channel(connection)
    ch.exchange_declare(exchange, "direct")
    ch._impl.basic_publish(exchange, "nowhere", b"x")
    ch._impl.basic_publish("", unique("no-such-queue"), b"y")
    wait_for(connection, lambda: log.covered() == 2, what="confirms")
    assert log.confirmed_tags() == [1, 2]


def test_mandatory_return_comes_before_ack(connection: pika.BlockingConnection) -> None:
    ch, log = _confirm_channel(connection)
    events: list[str] = []
    ch._impl.add_on_return_callback(lambda c, m, p, b: events.append(f"return {m.reply_code}"))
    ch._impl.callbacks.add(ch.channel_number, spec.Basic.Ack, lambda f: events.append("ack"), one_shot=False)
    ch._impl.basic_publish("", unique("nowhere"), b"x", mandatory=True)
    wait_for(connection, lambda: log.covered() == 1, what="confirm")
    wait_for(connection, lambda: len(events) == 2, what="return and ack")
    assert events == ["return 312", "ack"]


def test_blocking_confirm_delivery(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    ch.confirm_delivery()  # selecting again is harmless
    queue = ch.queue_declare("", exclusive=True).method.queue
    for i in range(5):
        ch.basic_publish("", queue, str(i).encode())  # each waits for its ack
    with_return = pika.exceptions.UnroutableError
    try:
        ch.basic_publish("", unique("nowhere"), b"x", mandatory=True)
    except with_return as error:
        assert [m.method.reply_code for m in error.messages] == [312]
    else:
        raise AssertionError("an unroutable mandatory publish in confirm mode must be returned")
    assert ch.queue_declare(queue, passive=True).method.message_count == 5


def test_delivery_tags_are_per_channel(connection: pika.BlockingConnection) -> None:
    ch1, log1 = _confirm_channel(connection)
    ch2, log2 = _confirm_channel(connection)
    queue = ch1.queue_declare("", exclusive=True).method.queue
    for _ in range(3):
        ch1._impl.basic_publish("", queue, b"a")
    ch2._impl.basic_publish("", queue, b"b")
    wait_for(connection, lambda: log1.covered() == 3 and log2.covered() == 1, what="confirms")
    assert log1.confirmed_tags() == [1, 2, 3]
    assert log2.confirmed_tags() == [1]


def test_publish_error_in_confirm_mode_closes_channel(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    missing = unique("x")
    assert broker_error(lambda: ch.basic_publish(missing, "k", b"x")) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )
    assert connection.is_open


def test_tx_then_confirm_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    ch.tx_select()
    assert broker_error(ch.confirm_delivery) == (
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    )
    assert connection.is_open


def test_confirm_then_tx_is_406(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    ch.confirm_delivery()
    assert broker_error(ch.tx_select) == (406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")
    assert connection.is_open


def test_aio_pika_publisher_confirms(broker: BrokerInfo) -> None:
    async def main() -> list[Any]:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            queue = await channel.declare_queue(exclusive=True)
            confirmations = await asyncio.gather(
                *(
                    channel.default_exchange.publish(aio_pika.Message(body=b"x"), queue.name)
                    for _ in range(50)
                ),
            )
            declared = await channel.declare_queue(queue.name, passive=True)
            assert declared.declaration_result.message_count == 50
            return list(confirmations)

    confirmations = asyncio.run(asyncio.wait_for(main(), 10))
    assert len(confirmations) == 50
    assert all(isinstance(c, Basic.Ack) for c in confirmations)


def test_persistent_to_durable_queue_is_confirmed(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch, log = _confirm_channel(connection)
    ch.queue_declare(queue, durable=True)
    for i in range(20):
        ch._impl.basic_publish("", queue, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    wait_for(connection, lambda: log.covered() == 20, what="confirms")
    assert log.confirmed_tags() == list(range(1, 21))
    assert ch.queue_declare(queue, durable=True, passive=True).method.message_count == 20
