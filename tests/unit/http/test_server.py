"""The HTTP transport with a trivial application, over real loopback sockets in one event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from ottermq.http import server as http_server
from ottermq.http.interface import Request, Response, json_response
from ottermq.http.server import HttpServer, Limits


async def echo(request: Request) -> Response:
    return json_response(
        200, {"method": request.method, "target": request.target.decode(), "body": len(request.body)}
    )


async def slow(request: Request) -> Response:
    await asyncio.sleep(1)
    return await echo(request)


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
            two = (
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            )
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


def test_connections_beyond_the_cap_get_503() -> None:
    async def scenario() -> None:
        server = HttpServer(slow, Limits(max_connections=1))
        port = (await server.start("127.0.0.1", 0))[0][1]
        try:
            # A connection whose request is being answered is never evicted to make room.
            _, holder = await asyncio.open_connection("127.0.0.1", port)
            holder.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.05)
            assert (await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 503 ")
            holder.close()
        finally:
            await server.stop()

    run(scenario())


async def authenticated(request: Request) -> Response:
    request.authenticated = request.target == b"/login"
    return await echo(request)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes, which must happen within `seconds`."""
    return await asyncio.wait_for(reader.read(1 << 20), seconds)


def test_deadlines_for_head_body_and_idle() -> None:
    limits = Limits(head_timeout=0.3, body_timeout=0.3, idle_timeout=0.3)

    async def scenario() -> None:
        server = HttpServer(echo, limits)
        port = (await server.start("127.0.0.1", 0))[0][1]
        try:
            # A head dribbled byte by byte, a body that never ends: 408 and closed at the deadline, although
            # bytes kept coming (before, each byte restarted a 30 s timer).
            body_head = b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n"
            for start in (b"GET / HTTP/1.1\r\nX: ", body_head):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(start)
                for _ in range(2):
                    await asyncio.sleep(0.1)
                    writer.write(b"a")
                assert (await closed_within(reader, 2)).startswith(b"HTTP/1.1 408 ")
                writer.close()
            # A kept-alive connection with no next request is closed quietly.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await asyncio.wait_for(reader.readuntil(b"}"), 5)
            assert first.startswith(b"HTTP/1.1 200 ")
            assert await closed_within(reader, 2) == b""
            writer.close()
        finally:
            await server.stop()

    run(scenario())


def test_unproven_connections_make_room_for_new_ones_not_for_each_other_forever() -> None:
    limits = Limits(max_connections=4, max_unproven=2)

    async def scenario() -> None:
        server = HttpServer(authenticated, limits)
        port = (await server.start("127.0.0.1", 0))[0][1]
        try:
            # Two proven connections, idle between requests.
            proven = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
                await asyncio.wait_for(reader.readuntil(b"}"), 5)
                proven.append((reader, writer))
            # Slow ones: each new one beyond two pushes the oldest slow one out.
            slow = []
            for _ in range(4):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\n")
                slow.append((reader, writer))
                await asyncio.sleep(0.05)
            for reader, _ in slow[:2]:
                assert await closed_within(reader, 2) == b""
            # A real request still gets in (evicting a slow one), and the proven ones are still served.
            assert b'"target":"/x"' in await exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", False)
            assert server.evicted == 3
            for reader, writer in proven:
                writer.write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b'"target":"/again"' in await asyncio.wait_for(reader.readuntil(b"}"), 5)
                writer.close()
            for _, writer in slow:
                writer.close()
        finally:
            await server.stop()

    run(scenario())


def test_an_ipv4_client_of_the_dual_stack_listener_is_named_by_its_ipv4_address() -> None:
    async def peer(request: Request) -> Response:
        return json_response(200, {"peer": request.peer_host})

    async def scenario() -> None:
        server = HttpServer(peer)
        try:
            port = (await server.start("::", 0))[0][1]
        except OSError:
            pytest.skip("no IPv6 on this machine")
        try:
            answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            # Not "::ffff:127.0.0.1": the password checks account it to the same source as AMQP.
            assert answer.endswith(b'{"peer":"127.0.0.1"}'), answer
        finally:
            await server.stop()

    run(scenario())


def test_a_full_api_evicts_the_oldest_login_waiting_for_its_password_check() -> None:
    gave_up: list[bytes] = []

    async def checking(request: Request) -> Response:
        if request.target != b"/check":
            return await echo(request)
        request.waiting = True  # as the application marks a login waiting for the hashing workers
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            gave_up.append(request.target)
            raise
        raise AssertionError("never answered")

    async def scenario() -> None:
        server = HttpServer(checking, Limits(max_connections=2))
        port = (await server.start("127.0.0.1", 0))[0][1]
        try:
            waiting = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /check HTTP/1.1\r\nHost: x\r\n\r\n")
                waiting.append((reader, writer))
                await asyncio.sleep(0.05)
            # Full of logins waiting for checks: a new request gets in, the oldest waiting one is closed.
            assert b'"target":"/x"' in await exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", False)
            assert await closed_within(waiting[0][0], 2) == b""
            assert gave_up == [b"/check"] and server.evicted == 1
            for _, writer in waiting:
                writer.close()
        finally:
            await server.stop(timeout=0.1)

    run(scenario())


def test_a_connection_just_opened_goes_after_logins_waiting_for_checks_and_not_for_long() -> None:
    async def checking(request: Request) -> Response:
        if request.target == b"/check":
            request.waiting = True  # a login waiting for the hashing workers
            await asyncio.sleep(3600)
        return await echo(request)

    async def scenario() -> None:
        server = HttpServer(checking, Limits(max_connections=2))
        port = (await server.start("127.0.0.1", 0))[0][1]
        try:
            check_r, check_w = await asyncio.open_connection("127.0.0.1", port)
            check_w.write(b"GET /check HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.05)
            # Opened, its request not read yet (a real client's, under a flood of failing logins).
            new_r, new_w = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.05)
            other = asyncio.create_task(exchange(port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", False))
            assert await closed_within(check_r, 2) == b""  # the waiting login made room
            new_w.write(b"GET /mine HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b'"target":"/mine"' in await asyncio.wait_for(new_r.readuntil(b"}"), 5)
            assert b'"target":"/other"' in await other
            new_w.close()
            await asyncio.sleep(0.05)
            # Past FRESH_SECONDS, a connection that has sent nothing is the first to go again.
            check_r, check_w = await asyncio.open_connection("127.0.0.1", port)
            check_w.write(b"GET /check HTTP/1.1\r\nHost: x\r\n\r\n")
            idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(http_server.FRESH_SECONDS + 0.2)
            assert b'"target":"/x"' in await exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", False)
            assert await closed_within(idle_r, 2) == b""
            for writer in (check_w, idle_w):
                writer.close()
        finally:
            await server.stop(timeout=0.1)

    run(scenario())
