"""RabbitMQ tutorials with asynchronous clients: aio-pika (1, 2, 5, 6) and pika's asyncio adapter (3).

Each test runs its own event loop through `asyncio.run` and bounds every wait with `asyncio.wait_for`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from tests.integration.conftest import BrokerInfo, Resources, unique

TIMEOUT = 10.0


def test_aio_pika_hello_world(broker: BrokerInfo, resources: Resources) -> None:
    queue_name = resources.queue(unique("hello"))

    async def main() -> list[bytes]:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(queue_name)
            for i in range(3):
                await channel.default_exchange.publish(
                    aio_pika.Message(body=f"Hello {i}".encode()), queue_name
                )
            got: list[bytes] = []
            async with queue.iterator() as it:
                async for message in it:
                    async with message.process():
                        got.append(message.body)
                    if len(got) == 3:
                        break
            return got

    assert asyncio.run(asyncio.wait_for(main(), TIMEOUT)) == [b"Hello 0", b"Hello 1", b"Hello 2"]


def test_aio_pika_work_queues(broker: BrokerInfo, resources: Resources) -> None:
    """Two workers with prefetch 1 share a durable queue; every persistent task is done exactly once."""
    queue_name = resources.queue(unique("task_queue"))

    async def main() -> dict[str, list[bytes]]:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            pub = await connection.channel()
            await pub.declare_queue(queue_name, durable=True)
            done: dict[str, list[bytes]] = {"a": [], "b": []}
            all_done = asyncio.Event()

            async def worker(name: str) -> None:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=1)
                queue = await channel.declare_queue(queue_name, durable=True)

                async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                    async with message.process():
                        done[name].append(message.body)
                    if sum(len(v) for v in done.values()) == 20:
                        all_done.set()

                await queue.consume(on_message)

            await worker("a")
            await worker("b")
            for i in range(20):
                await pub.default_exchange.publish(
                    aio_pika.Message(
                        body=f"task {i}".encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    ),
                    queue_name,
                )
            await all_done.wait()
            return done

    done = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert sorted(done["a"] + done["b"]) == sorted(f"task {i}".encode() for i in range(20))
    assert done["a"] and done["b"], "prefetch 1 spreads work over both workers"


def test_aio_pika_topics(broker: BrokerInfo, resources: Resources) -> None:
    exchange_name = resources.exchange(unique("topic_logs"))

    async def main() -> list[str]:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC)
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, routing_key="kern.*")
            await queue.bind(exchange, routing_key="*.critical")
            for key in (
                "kern.critical",
                "kern.info",
                "cron.critical",
                "cron.info",
                "kern.a.b",
                "end.critical",
            ):
                await exchange.publish(aio_pika.Message(body=key.encode()), routing_key=key)
            got: list[str] = []
            async with queue.iterator() as it:
                async for message in it:
                    await message.ack()
                    got.append(message.routing_key or "")
                    if got[-1] == "end.critical":
                        break
            return got

    got = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert got == ["kern.critical", "kern.info", "cron.critical", "end.critical"]


def test_aio_pika_rpc(broker: BrokerInfo, resources: Resources) -> None:
    rpc_queue = resources.queue(unique("rpc_queue"))

    async def main() -> dict[int, bytes]:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            # Server side.
            server_channel = await connection.channel()
            queue = await server_channel.declare_queue(rpc_queue)

            async def on_request(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    n = int(message.body)
                    assert message.reply_to is not None
                    await server_channel.default_exchange.publish(
                        aio_pika.Message(body=str(n * n).encode(), correlation_id=message.correlation_id),
                        routing_key=message.reply_to,
                    )

            await queue.consume(on_request)

            # Client side: an exclusive callback queue and futures keyed by correlation id.
            client_channel = await connection.channel()
            callback_queue = await client_channel.declare_queue(exclusive=True)
            assert callback_queue.name.startswith("amq.gen-")
            loop = asyncio.get_running_loop()
            futures: dict[str, asyncio.Future[bytes]] = {}

            async def on_response(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                assert message.correlation_id is not None
                futures.pop(message.correlation_id).set_result(message.body)

            await callback_queue.consume(on_response, no_ack=True)

            async def call(n: int) -> bytes:
                corr_id = str(uuid.uuid4())
                futures[corr_id] = loop.create_future()
                await client_channel.default_exchange.publish(
                    aio_pika.Message(
                        body=str(n).encode(), correlation_id=corr_id, reply_to=callback_queue.name
                    ),
                    routing_key=rpc_queue,
                )
                return await futures[corr_id]

            results = await asyncio.gather(*(call(n) for n in range(5)))
            return dict(enumerate(results))

    assert asyncio.run(asyncio.wait_for(main(), TIMEOUT)) == {n: str(n * n).encode() for n in range(5)}


def test_pika_asyncio_adapter_publish_subscribe(broker: BrokerInfo, resources: Resources) -> None:
    """Tutorial 3 (fanout logs) in pika's callback style on its asyncio adapter."""
    exchange = resources.exchange(unique("logs"))

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[list[bytes]] = loop.create_future()
        got: list[bytes] = []
        state: dict[str, Any] = {}

        def fail(*args: Any) -> None:
            if not result.done():
                result.set_exception(AssertionError(f"pika asyncio adapter failed: {args!r}"))

        def on_open(conn: AsyncioConnection) -> None:
            conn.channel(on_open_callback=on_channel)

        def on_channel(ch: Any) -> None:
            state["channel"] = ch
            ch.add_on_close_callback(lambda c, reason: fail(reason))
            ch.exchange_declare(exchange=exchange, exchange_type="fanout", callback=on_exchange)

        def on_exchange(frame: Any) -> None:
            state["channel"].queue_declare(queue="", exclusive=True, callback=on_queue)

        def on_queue(frame: Any) -> None:
            state["queue"] = frame.method.queue
            state["channel"].queue_bind(queue=state["queue"], exchange=exchange, callback=on_bind)

        def on_bind(frame: Any) -> None:
            state["channel"].basic_consume(
                queue=state["queue"],
                on_message_callback=on_message,
                auto_ack=True,
                callback=on_consume_ok,
            )

        def on_consume_ok(frame: Any) -> None:
            for i in range(3):
                state["channel"].basic_publish(exchange=exchange, routing_key="", body=f"log {i}".encode())

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            got.append(body)
            if len(got) == 3 and not result.done():
                result.set_result(list(got))

        conn = AsyncioConnection(
            pika.URLParameters(broker.url),
            on_open_callback=on_open,
            on_open_error_callback=lambda c, err: fail(err),
            custom_ioloop=loop,
        )
        try:
            return await asyncio.wait_for(result, TIMEOUT)
        finally:
            closed: asyncio.Future[None] = loop.create_future()

            def on_closed(c: Any, reason: Any) -> None:
                if not closed.done():
                    closed.set_result(None)

            if conn.is_open:
                conn.add_on_close_callback(on_closed)
                conn.close()
                await asyncio.wait_for(closed, TIMEOUT)

    assert asyncio.run(main()) == [b"log 0", b"log 1", b"log 2"]
