"""aio-pika beyond the tutorials: channel errors as its exceptions, returns, transactions, broker cancels."""

from __future__ import annotations

import asyncio
import datetime
import decimal
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq.exceptions
import pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from tests.integration.conftest import BrokerInfo, Resources, drain, unique

TIMEOUT = 10.0


def run(broker: BrokerInfo, body: Callable[[aio_pika.abc.AbstractConnection], Awaitable[Any]]) -> Any:
    """Run `body(connection)` on a fresh event loop with an aio-pika connection, bounded in time."""

    async def main() -> Any:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            return await body(connection)

    return asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_channel_errors_become_exceptions(broker: BrokerInfo) -> None:
    async def body(connection: aio_pika.abc.AbstractConnection) -> None:
        name = unique("q")
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity) as not_found:
            await channel.declare_queue(name, passive=True)
        assert not_found.value.args[0] == f"NOT_FOUND - no queue '{name}' in vhost '/'"

        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as refused:
            await channel.declare_exchange("amq." + name)
        assert (
            refused.value.args[0]
            == f"ACCESS_REFUSED - exchange name 'amq.{name}' contains reserved prefix 'amq.*'"
        )

        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await channel.declare_exchange("amq.topic", aio_pika.ExchangeType.DIRECT)

        # The connection outlives all of that.
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"ok"), queue.name)
        message = await queue.get(timeout=5)
        assert message is not None and message.body == b"ok"
        await message.ack()

    run(broker, body)


def test_exclusive_queue_locked(broker: BrokerInfo) -> None:
    async def body(connection: aio_pika.abc.AbstractConnection) -> None:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        other = await aio_pika.connect(broker.url)
        async with other:
            other_channel = await other.channel()
            with pytest.raises(aiormq.exceptions.ChannelLockedResource):
                await other_channel.declare_queue(queue.name, passive=True)

    run(broker, body)


def test_mandatory_return_with_confirms(broker: BrokerInfo) -> None:
    async def body(connection: aio_pika.abc.AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        with pytest.raises(aio_pika.exceptions.DeliveryError) as caught:
            await channel.default_exchange.publish(aio_pika.Message(b"x"), unique("nowhere"), mandatory=True)
        returned = caught.value.message
        assert returned is not None and returned.body == b"x"

    run(broker, body)


def test_transaction_commit_and_rollback(broker: BrokerInfo) -> None:
    async def body(connection: aio_pika.abc.AbstractConnection) -> list[bytes]:
        channel = await connection.channel(publisher_confirms=False)
        queue = await channel.declare_queue(exclusive=True)
        tx = channel.transaction()
        await tx.select()
        await channel.default_exchange.publish(aio_pika.Message(b"rolled back"), queue.name)
        await tx.rollback()
        await channel.default_exchange.publish(aio_pika.Message(b"committed"), queue.name)
        await tx.commit()
        got = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            got.append(message.body)
        return got

    assert run(broker, body) == [b"committed"]


def test_consume_ack_nack_reject(broker: BrokerInfo) -> None:
    async def body(connection: aio_pika.abc.AbstractConnection) -> list[tuple[bytes, bool]]:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        queue = await channel.declare_queue(exclusive=True)
        for text in (b"ack", b"nack", b"reject"):
            await channel.default_exchange.publish(aio_pika.Message(text), queue.name)
        seen: list[tuple[bytes, bool]] = []
        finished = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            seen.append((message.body, message.redelivered or False))
            if message.redelivered:
                await message.ack()
                finished.set()
            elif message.body == b"ack":
                await message.ack()
            elif message.body == b"nack":
                await message.nack(requeue=True)
            else:
                await message.reject(requeue=False)

        await queue.consume(on_message)
        await finished.wait()
        return seen

    assert run(broker, body) == [(b"ack", False), (b"nack", False), (b"reject", False), (b"nack", True)]


def test_queue_iterator_and_cancel(broker: BrokerInfo) -> None:
    async def body(connection: aio_pika.abc.AbstractConnection) -> tuple[list[bytes], list[bytes]]:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for i in range(5):
            await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), queue.name)
        got: list[bytes] = []
        async with queue.iterator() as it:
            async for message in it:
                await message.ack()
                got.append(message.body)
                if len(got) == 3:
                    break
        # Leaving the iterator cancelled the consumer and gave back what it had not handled.
        rest = []
        while (leftover := await queue.get(fail=False, no_ack=True)) is not None:
            rest.append(leftover.body)
        return got, rest

    got, rest = run(broker, body)
    assert got == [b"0", b"1", b"2"]
    assert rest == [b"3", b"4"]


HEADERS: dict[str, Any] = {
    "float": 1.5,
    "tiny": 5,
    "short": 1000,
    "int": 100000,
    "long": 2**40,
    "neg": -3,
    "decimal": decimal.Decimal("1.23"),
    "str": "värde",
    "bool": True,
    "list": [1, "a", 2.5],
    "void": None,
    "time": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    "table": {"x": {"y": 1}},
}


def test_header_types_round_trip(broker: BrokerInfo) -> None:
    """aio-pika encodes ints by width (b, s, I, l) and floats as d: all pass through unchanged."""

    async def body(connection: aio_pika.abc.AbstractConnection) -> Any:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"x", headers=HEADERS), queue.name)
        message = await queue.get(timeout=5)
        assert message is not None
        await message.ack()
        return message.headers

    assert run(broker, body) == HEADERS


def test_headers_match_across_integer_widths(broker: BrokerInfo, resources: Resources) -> None:
    """A binding made by pika (int as I) matches a header aio-pika sends as a short-short int (b)."""
    exchange = resources.exchange()
    conn = pika.BlockingConnection(broker.params())
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, "headers")
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, exchange, "", arguments={"x-match": "all", "n": 5, "m": 1000})

        async def body(connection: aio_pika.abc.AbstractConnection) -> None:
            channel = await connection.channel(publisher_confirms=True)
            target = await channel.get_exchange(exchange)
            await target.publish(aio_pika.Message(b"widths", headers={"n": 5, "m": 1000}), "")
            await target.publish(aio_pika.Message(b"other", headers={"n": 6, "m": 1000}), "")

        run(broker, body)
        assert drain(ch, queue) == [b"widths"]
    finally:
        conn.close()
