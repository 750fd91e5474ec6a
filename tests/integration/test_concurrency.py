"""Several producers and consumers on separate connections at once: every confirmed message is delivered
exactly once, nothing is left behind."""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from tests.integration.conftest import BrokerInfo, Resources

PRODUCERS = 4
CONSUMERS = 3
PER_PRODUCER = 300


def test_producers_and_consumers(broker: BrokerInfo, resources: Resources) -> None:
    queue_name = resources.queue()

    async def main() -> dict[int, list[int]]:
        setup = await aio_pika.connect(broker.url)
        async with setup:
            channel = await setup.channel()
            await channel.declare_queue(queue_name)

        received: dict[int, list[int]] = {p: [] for p in range(PRODUCERS)}
        total = PRODUCERS * PER_PRODUCER
        done = asyncio.Event()
        count = 0

        async def consumer() -> aio_pika.abc.AbstractConnection:
            connection = await aio_pika.connect(broker.url)
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=10)
            queue = await channel.declare_queue(queue_name)

            async def on_message(message: AbstractIncomingMessage) -> None:
                nonlocal count
                producer, seq = (int(part) for part in message.body.split(b":"))
                received[producer].append(seq)
                await message.ack()
                count += 1
                if count == total:
                    done.set()

            await queue.consume(on_message)
            return connection

        async def producer(p: int) -> None:
            connection = await aio_pika.connect(broker.url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                # Many publishes in flight at once, each awaiting its own confirm.
                await asyncio.gather(
                    *(
                        channel.default_exchange.publish(aio_pika.Message(f"{p}:{seq}".encode()), queue_name)
                        for seq in range(PER_PRODUCER)
                    )
                )

        consumers = [await consumer() for _ in range(CONSUMERS)]
        try:
            await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))
            await done.wait()
        finally:
            for connection in consumers:
                await connection.close()
        return received

    received = asyncio.run(asyncio.wait_for(main(), 60))
    for p in range(PRODUCERS):
        assert sorted(received[p]) == list(range(PER_PRODUCER)), f"producer {p}: lost or duplicated messages"
