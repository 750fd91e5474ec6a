"""The HTTP transport with a trivial application, over real loopback sockets in one event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from ottermq.http import server as http_server
from ottermq.http.server import HttpServer, Request, Response, json_response


async def echo(request: Request) -> Response:
    return json_response(200, {"method": request.method, "target": request.target.decode(),
                               "body": len(request.body)})


async def exchange(port: int, data: bytes, read_all: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        if read_all:
            return await asyncio.wait_for(reader.read(1 << 20), 5)
        return await asyncio.wait_for(reader.readuntil(b"}"), 5)
    finally:
        writer.close()


def run(test: Coroutine[Any, Any, None]) -> None:
    asyncio.run(test)


def test_keep_alive_and_errors() -> None:
    async def scenario() -> None:
        server = HttpServer(echo)
        port = (await server.start("127.0.0.1", 0))[0][1]
        try:
            two = (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(two)
            first = await asyncio.wait_for(reader.readuntil(b"}"), 5)
            second = await asyncio.wait_for(reader.readuntil(b"}"), 5)
            writer.close()
            assert b'"target":"/a"' in first and b'"body":3' in second
            assert (await exchange(port, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            big = b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (http_server.MAX_BODY + 1)
            assert (await exchange(port, big)).startswith(b"HTTP/1.1 413 ")
            head = await exchange(port, b"HEAD /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        finally:
            await server.stop()

    run(scenario())


def test_stop_ends_idle_connections_at_once() -> None:
    async def scenario() -> None:
        server = HttpServer(echo)
        port = (await server.start("127.0.0.1", 0))[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"}"), 5)
        started = time.monotonic()
        await server.stop(timeout=5)
        assert time.monotonic() - started < 1
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    run(scenario())


def test_connections_beyond_the_cap_get_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "MAX_CONNECTIONS", 1)

    async def scenario() -> None:
        server = HttpServer(echo)
        port = (await server.start("127.0.0.1", 0))[0][1]
        try:
            _, holder = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.05)
            assert (await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 503 ")
            holder.close()
        finally:
            await server.stop()

    run(scenario())
