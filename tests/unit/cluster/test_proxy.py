"""The AMQP proxy in one event loop, over loopback TCP, with a plain TCP server standing for the leader:
bytes both ways, both sides closed when either ends, bounded memory when the leader does not read, sessions
to a leader that no longer leads closed, an unreachable leader."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import pytest

from ottermq.cluster.proxy import AmqpProxy, Upstream

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def front(proxy: AmqpProxy) -> tuple[asyncio.Server, int]:
    """A listener whose sockets the proxy relays (as the server's accept path does)."""

    def factory() -> asyncio.BaseProtocol:
        protocol = proxy.protocol()
        assert protocol is not None
        return protocol

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_bytes_go_both_ways_and_either_end_closes_both() -> None:
    async def scenario() -> None:
        ended: list[str] = []

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            ended.append("leader saw EOF")
            writer.close()

        leader, port = await listen(echo)
        proxy = AmqpProxy(lambda: Upstream("127.0.0.1", port, 1))
        listener, front_port = await front(proxy)
        reader, writer = await asyncio.open_connection("127.0.0.1", front_port)
        payload = os.urandom(3 * 1024 * 1024)
        writer.write(payload)
        echoed = await reader.readexactly(len(payload))
        assert echoed == payload
        assert len(proxy.sessions) == 1 and proxy.opened == 1
        writer.close()  # the client goes: the leader's side is closed too
        await until(lambda: ended == ["leader saw EOF"] and not proxy.sessions)
        # The leader closes: the client sees EOF.
        closing_leader, closing_port = await listen(lambda _r, w: _close_now(w))
        proxy.upstream = lambda: Upstream("127.0.0.1", closing_port, 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", front_port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await until(lambda: not proxy.sessions)
        await proxy.stop()
        for server in (leader, closing_leader, listener):
            server.close()

    asyncio.run(scenario())


async def _close_now(writer: asyncio.StreamWriter) -> None:
    writer.close()


def test_a_leader_that_does_not_read_holds_the_client_back() -> None:
    async def scenario() -> None:
        stalled = asyncio.Event()

        async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.transport.pause_reading()  # type: ignore[attr-defined]
            await stalled.wait()
            writer.close()

        leader, port = await listen(deaf)
        proxy = AmqpProxy(lambda: Upstream("127.0.0.1", port, 1), buffer=64 * 1024)
        listener, front_port = await front(proxy)
        _reader, writer = await asyncio.open_connection("127.0.0.1", front_port)
        chunk = b"x" * (1 << 20)
        sent = 0
        # Kernel buffers on loopback take some MiB on each of the three sockets; without back-pressure
        # the proxy would take all 200 MiB.
        with contextlib.suppress(TimeoutError):
            while sent < 200 << 20:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 1.0)
                sent += len(chunk)
        assert sent < 64 << 20, f"{sent >> 20} MiB accepted while the leader reads nothing"
        stalled.set()
        writer.transport.abort()
        await until(lambda: not proxy.sessions)
        await proxy.stop()
        leader.close()
        listener.close()

    asyncio.run(scenario())


def test_sessions_to_a_leader_that_no_longer_leads_are_closed() -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # holds the connection open until the proxy closes it
            writer.close()

        leader, port = await listen(silent)
        current: list[Upstream | None] = [Upstream("127.0.0.1", port, 1)]
        proxy = AmqpProxy(lambda: current[0], check_interval=0.05)
        listener, front_port = await front(proxy)
        clients = [await asyncio.open_connection("127.0.0.1", front_port) for _ in range(3)]
        await until(lambda: len(proxy.sessions) == 3)
        current[0] = Upstream("127.0.0.1", port, 2)  # the same address, a new term: a new leader
        for reader, _writer in clients:
            assert await asyncio.wait_for(reader.read(), 2) == b""
        await until(lambda: not proxy.sessions)
        current[0] = None
        assert proxy.protocol() is None  # no leader known: the server handles the socket itself
        await proxy.stop()
        assert proxy._watcher is None or proxy._watcher.done()
        leader.close()
        listener.close()

    asyncio.run(scenario())


def test_an_unreachable_leader_closes_the_client() -> None:
    async def scenario() -> None:
        leader, port = await listen(lambda _r, w: _close_now(w))
        leader.close()
        await leader.wait_closed()  # nothing listens on `port` any more
        proxy = AmqpProxy(lambda: Upstream("127.0.0.1", port, 1))
        listener, front_port = await front(proxy)
        reader, writer = await asyncio.open_connection("127.0.0.1", front_port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await until(lambda: not proxy.sessions)
        assert proxy.failed == 1 and proxy.status()["connections"] == 0
        await proxy.stop()
        listener.close()

    asyncio.run(scenario())
