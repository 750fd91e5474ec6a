"""RabbitMQ's stream protocol, with real clients (rstream, rbfly) against a broker with `stream_port` set:
publish with confirms, subscribe from every offset specification, deduplication, offset tracking across a
restart, both protocols on one stream, refused logins, message sizes from 0 B to over 1 MiB, bad input."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from rstream import (
    AMQPMessage,
    Consumer,
    ConsumerOffsetSpecification,
    MessageContext,
    OffsetType,
    Producer,
    amqp_decoder,
)
from rstream.exceptions import AuthenticationFailure, OffsetNotFound, PreconditionFailed

from tests.integration.conftest import _free_port, wait_for
from tests.integration.test_restart import Node

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="needs a broker of our own with stream_port set"
)

TIMEOUT = 15.0


class StreamNode(Node):
    """A broker with the stream protocol on a port of its own."""

    def __init__(self, base: Path) -> None:
        self.stream_port = _free_port()
        super().__init__(base, stream_port=self.stream_port)

    def start(self, expect_failure: bool = False) -> int | None:
        port = super().start(expect_failure)
        deadline = time.monotonic() + 10
        while "stream protocol listening" not in self.log_text():
            assert time.monotonic() < deadline, self.log_text()
            time.sleep(0.05)
        return port


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamNode]:
    n = StreamNode(tmp_path_factory.mktemp("streamproto"))
    n.start()
    try:
        yield n
    finally:
        n.close()


def producer(node: StreamNode, **kwargs: Any) -> Producer:
    return Producer("127.0.0.1", port=node.stream_port, username="guest", password="guest", **kwargs)


def consumer(node: StreamNode, **kwargs: Any) -> Consumer:
    return Consumer("127.0.0.1", port=node.stream_port, username="guest", password="guest", **kwargs)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


async def publish(node: StreamNode, stream: str, bodies: list[bytes], **kwargs: Any) -> None:
    """Publish `bodies` in order and wait for every confirm."""
    async with producer(node, **kwargs) as p:
        await p.create_stream(stream, exists_ok=True)
        confirmed: list[int] = []
        done = asyncio.Event()

        async def on_confirm(status: Any) -> None:
            assert status.is_confirmed
            confirmed.append(status.message_id)
            if len(confirmed) == len(bodies):
                done.set()

        await p.send_batch(stream, [AMQPMessage(body=body) for body in bodies], on_publish_confirm=on_confirm)
        await done.wait()
        assert sorted(confirmed) == list(range(1, len(bodies) + 1))


async def read(
    node: StreamNode, stream: str, spec: ConsumerOffsetSpecification, count: int, **kwargs: Any
) -> list[tuple[int, bytes]]:
    """(offset, body) of the first `count` messages from `spec`."""
    got: list[tuple[int, bytes]] = []
    done = asyncio.Event()

    async def on_message(message: Any, context: MessageContext) -> None:
        got.append((context.offset, bytes(message.body or b"")))  # rstream: an empty body is None
        if len(got) >= count:
            done.set()

    c = consumer(node, **kwargs)
    await c.start()
    try:
        await c.subscribe(stream, on_message, offset_specification=spec, decoder=amqp_decoder)
        await done.wait()
    finally:
        await c.close()
    return got


def test_publish_with_confirms_and_consume_from_first(node: StreamNode) -> None:
    bodies = [b"m%d" % i for i in range(3000)]
    run(publish(node, "sp-first", bodies))
    got = run(read(node, "sp-first", ConsumerOffsetSpecification(OffsetType.FIRST), len(bodies)))
    assert got == list(enumerate(bodies))


def test_offset_specifications(node: StreamNode) -> None:
    bodies = [b"o%d" % i for i in range(50)]
    run(publish(node, "sp-offsets", bodies))
    got = run(read(node, "sp-offsets", ConsumerOffsetSpecification(OffsetType.OFFSET, 30), 20))
    assert got == list(enumerate(bodies))[30:]
    got = run(read(node, "sp-offsets", ConsumerOffsetSpecification(OffsetType.LAST), 1))
    assert got == [(49, b"o49")]
    got = run(read(node, "sp-offsets", ConsumerOffsetSpecification(OffsetType.TIMESTAMP, 0), 50))
    assert got == list(enumerate(bodies))

    async def next_then_publish() -> list[tuple[int, bytes]]:
        reading = asyncio.create_task(
            read(node, "sp-offsets", ConsumerOffsetSpecification(OffsetType.NEXT), 2)
        )
        await asyncio.sleep(0.5)  # subscribed by now: only what follows is delivered
        await publish(node, "sp-offsets", [b"after-1", b"after-2"])
        return await reading

    assert run(next_then_publish()) == [(50, b"after-1"), (51, b"after-2")]


def numbered(i: int) -> AMQPMessage:
    message = AMQPMessage(body=b"d%d" % i)
    message.publishing_id = i  # this rstream's constructor does not take it
    return message


def test_deduplication_by_publisher_reference(node: StreamNode) -> None:
    async def scenario() -> tuple[int, int, list[tuple[int, bytes]]]:
        async with producer(node) as p:
            await p.create_stream("sp-dedup", exists_ok=True)
            for i in range(1, 11):
                await p.send_wait("sp-dedup", numbered(i), publisher_name="app")
            # Sent again (a producer restarting): confirmed, not appended.
            for i in range(5, 13):
                await p.send_wait("sp-dedup", numbered(i), publisher_name="app")
        async with producer(node) as p:
            client = await p.default_client
            sequence = await client.query_publisher_sequence("sp-dedup", "app")
            other = await client.query_publisher_sequence("sp-dedup", "nobody")
        got = await read(node, "sp-dedup", ConsumerOffsetSpecification(OffsetType.FIRST), 12)
        return sequence, other, got

    sequence, other, got = run(scenario())
    assert (sequence, other) == (12, 0)
    assert got == [(i - 1, b"d%d" % i) for i in range(1, 13)]


def test_deduplication_accepts_publishing_id_zero_from_a_new_publisher(node: StreamNode) -> None:
    # As osiris: a reference with no sequence yet has no duplicates, so its first id may be 0 (rstream's
    # deduplication example numbers from 0); afterwards 0 is a duplicate like any id not above the last.
    async def scenario() -> tuple[int, list[tuple[int, bytes]]]:
        async with producer(node) as p:
            await p.create_stream("sp-dedup-zero", exists_ok=True)
            for i in (0, 0, 1, 0, 2):
                await p.send_wait("sp-dedup-zero", numbered(i), publisher_name="from-zero")
            client = await p.default_client
            sequence = await client.query_publisher_sequence("sp-dedup-zero", "from-zero")
        got = await read(node, "sp-dedup-zero", ConsumerOffsetSpecification(OffsetType.FIRST), 3)
        return sequence, got

    sequence, got = run(scenario())
    assert sequence == 2
    assert got == [(0, b"d0"), (1, b"d1"), (2, b"d2")]


def test_single_active_consumer_is_refused_not_ignored(node: StreamNode) -> None:
    # Not built: two "single active" consumers that both got every message would each process all of
    # them, so the subscribe is refused (17, as RabbitMQ 3.11+ refuses a malformed one) and the
    # connection stays usable.
    run(publish(node, "sp-sac", [b"s0", b"s1"]))
    run(publish(node, "sp-sac-plain", [b"p0", b"p1"]))

    async def scenario() -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []
        done = asyncio.Event()

        async def on_message(message: Any, context: MessageContext) -> None:
            got.append((context.offset, bytes(message.body)))
            if len(got) == 2:
                done.set()

        c = consumer(node)
        await c.start()
        try:
            with pytest.raises(PreconditionFailed):
                await c.subscribe(
                    "sp-sac",
                    on_message,
                    subscriber_name="group-1",
                    properties={"single-active-consumer": "true", "name": "group-1"},
                )
            # The same connection goes on (rstream counts "sp-sac" as subscribed now: another stream).
            await c.subscribe("sp-sac-plain", on_message, decoder=amqp_decoder)
            await done.wait()
        finally:
            await c.close()
        return got

    assert run(scenario()) == [(0, b"p0"), (1, b"p1")]


def test_offsets_stored_queried_and_durable(node: StreamNode) -> None:
    run(publish(node, "sp-track", [b"t"] * 5))

    async def store() -> int:
        c = consumer(node)
        await c.start()
        try:
            with pytest.raises(OffsetNotFound):
                await c.query_offset("sp-track", "reader-a")
            await c.store_offset("sp-track", "reader-a", 3)
            await asyncio.sleep(0.1)
            return await c.query_offset("sp-track", "reader-a")
        finally:
            await c.close()

    async def query() -> int:
        c = consumer(node)
        await c.start()
        try:
            return await c.query_offset("sp-track", "reader-a")
        finally:
            await c.close()

    assert run(store()) == 3
    node.restart()
    assert run(query()) == 3
    got = run(read(node, "sp-track", ConsumerOffsetSpecification(OffsetType.FIRST), 5))
    assert [offset for offset, _ in got] == [0, 1, 2, 3, 4]


def test_written_over_amqp_read_over_stream_protocol_and_back(node: StreamNode) -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare("sp-both", durable=True, arguments={"x-queue-type": "stream"})
    channel.confirm_delivery()
    props = pika.BasicProperties(content_type="text/plain", message_id="m-1", headers={"k": "v", "n": 7})
    channel.basic_publish("", "sp-both", b"from amqp 0.9.1", props)

    async def over_stream() -> AMQPMessage:
        found: list[AMQPMessage] = []
        done = asyncio.Event()

        async def on_message(message: AMQPMessage, context: MessageContext) -> None:
            found.append(message)
            done.set()

        c = consumer(node)
        await c.start()
        await c.subscribe(
            "sp-both", on_message, offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST),
            decoder=amqp_decoder,
        )  # fmt: skip
        await done.wait()
        await c.close()
        return found[0]

    message = run(over_stream())
    assert bytes(message.body) == b"from amqp 0.9.1"
    assert message.properties.content_type in (b"text/plain", "text/plain")
    assert message.properties.message_id in (b"m-1", "m-1")
    app = {(k.decode() if isinstance(k, bytes) else k): v for k, v in message.application_properties.items()}
    assert app["n"] == 7 and app["k"] in (b"v", "v")

    async def publish_one() -> None:
        async with producer(node) as p:
            await p.send_wait(
                "sp-both", AMQPMessage(body=b"from streams", application_properties={"colour": "blue"})
            )

    run(publish_one())
    channel.basic_qos(prefetch_count=10)
    got: list[tuple[Any, bytes]] = []
    channel.basic_consume(
        "sp-both", lambda ch, m, p, body: got.append((p, body)), arguments={"x-stream-offset": "first"}
    )
    wait_for(connection, lambda: len(got) == 2, what="both messages over AMQP 0.9.1")
    assert got[0][1] == b"from amqp 0.9.1"
    props_back, body = got[1]
    assert body == b"from streams"
    assert props_back.headers["x-stream-offset"] == 1
    assert props_back.headers["colour"] in (b"blue", "blue")
    connection.close()


def test_bad_credentials_are_refused(node: StreamNode) -> None:
    async def attempt() -> None:
        async with Producer("127.0.0.1", port=node.stream_port, username="guest", password="wrong") as p:
            await p.create_stream("never")

    with pytest.raises(AuthenticationFailure):
        run(attempt())


@pytest.mark.parametrize("size", [0, 1, 1000, 65536, (1 << 20) + 100])
def test_sizes(node: StreamNode, size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    stream = f"sp-size-{size}"
    run(publish(node, stream, [body, b"after"], frame_max=4 << 20))
    got = run(read(node, stream, ConsumerOffsetSpecification(OffsetType.FIRST), 2, frame_max=4 << 20))
    assert got == [(0, body), (1, b"after")]


def _frame(key: int, body: bytes) -> bytes:
    return struct.pack(">IHH", len(body) + 4, key, 1) + body


def _read_frame(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        part = sock.recv(4 - len(head))
        if not part:
            return b""
        head += part
    (size,) = struct.unpack(">I", head)
    data = b""
    while len(data) < size:
        part = sock.recv(size - len(data))
        assert part
        data += part
    return data


@pytest.mark.parametrize(
    "garbage",
    [
        _frame(0x0F, b"\x00\x00\x00\x01"),  # metadata before the handshake
        _frame(0x11, b"\x00\x00\x00\x01\x7f\xff\xff\xff"),  # peer properties claiming 2**31 entries
        _frame(0x11, b"\x00"),  # peer properties cut short
        b"\xff\xff\xff\xff" + b"x" * 100,  # a frame of 4 GiB
        _frame(0x7777, b""),  # an unknown key
    ],
)
def test_bad_input_gets_a_close_and_the_broker_lives_on(node: StreamNode, garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", node.stream_port), timeout=5) as sock:
        sock.sendall(garbage)
        answer = _read_frame(sock)
        key, _version, correlation, code = struct.unpack_from(">HHIH", answer)
        assert key == 0x16 and code in (0x0D, 0x0E)
        try:
            sock.sendall(struct.pack(">IHHIH", 10, 0x8016, 1, correlation, 1))  # the close's answer
        except OSError:
            pass  # a frame that cannot be cut off: the broker did not wait for it
        try:
            assert _read_frame(sock) == b""  # then the socket is closed
        except ConnectionResetError:
            pass  # closed before our answer arrived: the answer was refused
    run(publish(node, "sp-alive", [b"still here"]))


def test_rbfly_publishes_and_reads(node: StreamNode) -> None:
    rbfly = pytest.importorskip("rbfly.streams")

    async def scenario() -> list[bytes]:
        client = rbfly.streams_client(f"rabbitmq-stream://guest:guest@127.0.0.1:{node.stream_port}/")
        await client.create_stream("sp-rbfly")
        async with client.publisher("sp-rbfly") as publisher:
            for i in range(100):
                await publisher.send(b"r%d" % i)
        got: list[bytes] = []
        async for message in client.subscribe("sp-rbfly", offset=rbfly.Offset.FIRST):
            got.append(message)
            if len(got) == 100:
                break
        await client.disconnect()
        return got

    assert run(scenario()) == [b"r%d" % i for i in range(100)]
