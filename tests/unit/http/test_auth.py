"""Basic-auth header parsing, the tag rules and the full checks in the broker's scheduler, no socket."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest

from ottermq.amqp.methods import ConnectionClose
from ottermq.broker.broker import Broker
from ottermq.http.auth import TooManyLogins, Unauthorized, authenticate, parse_basic, visible_vhosts
from ottermq.http.interface import Request
from tests.unit.broker.test_login_offloop import start_login


def basic(text: bytes) -> str:
    return "Basic " + base64.b64encode(text).decode()


def test_parse_basic() -> None:
    assert parse_basic(basic(b"guest:gu:est")) == ("guest", "gu:est")
    assert parse_basic(basic(b"u:")) == ("u", "")
    for bad in (None, "", "Bearer x", "Basic !!!", basic(b"no-colon"), basic(b"\xff:\xfe")):
        assert parse_basic(bad) is None


def test_authenticate_applies_tags_and_loopback() -> None:
    broker = Broker()
    broker.access.add_user("plain", "pw")
    broker.access.add_user("mon", "pw", ("monitoring",))

    def login(header: str, host: str = "127.0.0.1") -> str:
        return asyncio.run(authenticate(broker, header, host)).name

    assert login(basic(b"guest:guest")) == "guest"
    assert login(basic(b"mon:pw")) == "mon"
    for header, host in (
        (basic(b"plain:pw"), "127.0.0.1"),
        (basic(b"guest:guest"), "10.1.2.3"),
        (basic(b"guest:nope"), "127.0.0.1"),
        ("", "127.0.0.1"),
    ):
        with pytest.raises(Unauthorized) as refused:
            login(header, host)
        assert refused.value.status == 401
        assert ("www-authenticate", 'Basic realm="RabbitMQ Management"') in refused.value.response().headers
    mon = broker.access.user("mon")
    assert mon is not None and visible_vhosts(broker, mon) == ["/"]


# -- the full check goes to the broker's scheduler ---------------------------------------------------------


class Workers:
    """The broker's worker threads, run when the test says so (timers never fire)."""

    def __init__(self, broker: Broker) -> None:
        self.work: list[tuple[Callable[[], bool], Callable[[bool], None]]] = []
        broker.auth.checks.runner = self

    def run(self, work: Callable[[], bool], finished: Callable[[bool], None]) -> None:
        self.work.append((work, finished))

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return asyncio.get_running_loop().call_later(3600, callback)

    def finish_one(self) -> None:
        work, done = self.work.pop(0)
        done(work())


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_http_logins_wait_in_the_brokers_scheduler_with_amqp_ones() -> None:
    broker = Broker()
    workers = Workers(broker)
    checks = broker.auth.checks

    async def scenario() -> None:
        # An IPv4 client of the dual-stack listener, as the HTTP server may see it, and the same client
        # over AMQP: one source, one queue, one failure budget.
        http = asyncio.ensure_future(authenticate(broker, basic(b"nobody:x"), "::ffff:10.0.0.7"))
        await _turns()
        assert len(workers.work) == 1 and checks.running == 1
        amqp = start_login(broker, "nobody", "y", "10.0.0.7")
        assert checks.queued == 1
        workers.finish_one()
        await _turns()
        with pytest.raises(Unauthorized):
            http.result()
        # The failed HTTP check was charged to the address the AMQP login comes from.
        assert checks.budget("10.0.0.7") < checks.failure_burst
        assert checks.budget("::ffff:10.0.0.7") == checks.failure_burst
        workers.finish_one()
        assert amqp.expect(ConnectionClose, 0).reply_code == 403

    asyncio.run(scenario())


def test_a_login_refused_unchecked_is_429_with_retry_after() -> None:
    broker = Broker()
    workers = Workers(broker)
    broker.auth.checks.per_source = 2

    async def scenario() -> None:
        guesses = [
            asyncio.ensure_future(authenticate(broker, basic(f"nobody:{i}".encode()), "10.0.0.8"))
            for i in range(4)
        ]
        await _turns()
        # One runs, two wait; the fourth pushed the oldest waiting one out.
        assert guesses[1].done() and not any(g.done() for g in guesses[0:1] + guesses[2:])
        refused = guesses[1].exception()
        assert isinstance(refused, TooManyLogins) and refused.status == 429
        assert ("retry-after", "2") in refused.response().headers
        while workers.work:
            workers.finish_one()
            await _turns()
        for guess in guesses[0:1] + guesses[2:]:
            assert isinstance(guess.exception(), Unauthorized)

    asyncio.run(scenario())


def test_a_cancelled_request_gives_its_waiting_check_up() -> None:
    broker = Broker()
    workers = Workers(broker)

    async def scenario() -> None:
        running = asyncio.ensure_future(authenticate(broker, basic(b"nobody:a"), "10.0.0.9"))
        waiting = asyncio.ensure_future(authenticate(broker, basic(b"nobody:b"), "10.0.0.9"))
        await _turns()
        assert broker.auth.checks.queued == 1
        waiting.cancel()
        await _turns()
        assert broker.auth.checks.queued == 0
        workers.finish_one()
        await _turns()
        assert workers.work == [] and isinstance(running.exception(), Unauthorized)

    asyncio.run(scenario())


def test_a_request_is_marked_waiting_while_its_check_waits() -> None:
    broker = Broker()
    workers = Workers(broker)
    request = Request("GET", b"/api/whoami", {}, b"", "10.0.0.10")

    async def scenario() -> None:
        login = asyncio.ensure_future(authenticate(broker, basic(b"nobody:x"), "10.0.0.10", request))
        await _turns()
        assert request.waiting
        workers.finish_one()
        await _turns()
        assert isinstance(login.exception(), Unauthorized) and not request.waiting

    asyncio.run(scenario())
