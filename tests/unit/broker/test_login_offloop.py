"""The full password check runs off the event loop, and the connection waits for it in order.

With a runner installed (the server installs worker threads), the PBKDF2 check goes to the
authenticator's scheduler as work for a worker thread; this runner keeps the work until the test runs
it, so the test can check what the connection does meanwhile: nothing is sent, reading is paused, and
frames the client pipelined behind start-ok stay unhandled until the answer. A remembered successful
check needs no worker and answers at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ottermq.amqp.constants import PROTOCOL_HEADER
from ottermq.amqp.frames import encode_method_frame
from ottermq.amqp.methods import (
    ConnectionClose,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
)
from ottermq.broker.auth import AuthFailure, PendingLogin
from ottermq.broker.broker import Broker
from tests.unit.broker.test_connection_harness import CLIENT_CAPABILITIES, Client, CollectingTransport


class WorkerTransport(CollectingTransport):
    """A transport whose broker's worker threads run only when the test says so."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.work: list[tuple[Callable[[], bool], Callable[[bool], None]]] = []
        broker.auth.checks.runner = self

    def run(self, work: Callable[[], bool], finished: Callable[[bool], None]) -> None:
        self.work.append((work, finished))

    def finish_work(self) -> None:
        items, self.work = self.work, []
        for work, done in items:
            done(work())


def client(broker: Broker) -> tuple[Client, WorkerTransport]:
    c = Client(broker)
    transport = WorkerTransport(broker)
    c.transport = transport
    c.conn = broker.new_connection(transport, ("127.0.0.1", 40000))
    return c, transport


def start_ok(password: str) -> bytes:
    response = b"\x00guest\x00" + password.encode()
    return encode_method_frame(0, ConnectionStartOk({"capabilities": CLIENT_CAPABILITIES}, "PLAIN", response))


def test_frames_behind_start_ok_wait_for_the_password_check() -> None:
    broker = Broker()
    c, transport = client(broker)
    c.send(PROTOCOL_HEADER)
    c.expect(ConnectionStart, 0)
    # start-ok, tune-ok and open in one read, as a pipelining client would send them.
    c.send(
        start_ok("guest")
        + encode_method_frame(0, ConnectionTuneOk(2047, 131072, 0))
        + encode_method_frame(0, ConnectionOpen("/"))
    )
    assert len(transport.work) == 1 and not transport.reading
    assert c.silent() and c.conn.state == "starting"
    c.send(encode_method_frame(0, ConnectionOpen("/")))  # more bytes meanwhile: buffered, not handled
    assert c.silent() and c.conn.state == "starting"
    transport.finish_work()
    assert transport.reading
    c.expect(ConnectionTune, 0)
    c.expect(ConnectionOpenOk, 0)
    assert c.conn.user == "guest"
    # The second open was handled after the first, in order: a connection-level error for it.
    assert c.expect(ConnectionClose, 0).reply_code == 504 and c.conn.state == "closing"

    # The check succeeded once: the next login with that password needs no worker.
    again, transport = client(broker)
    again.send(PROTOCOL_HEADER)
    again.expect(ConnectionStart, 0)
    again.send(start_ok("guest"))
    assert transport.work == [] and transport.reading
    again.expect(ConnectionTune, 0)


def test_a_wrong_password_is_refused_when_the_check_answers() -> None:
    broker = Broker()
    c, transport = client(broker)
    c.send(PROTOCOL_HEADER)
    c.expect(ConnectionStart, 0)
    c.send(start_ok("wrong"))
    assert len(transport.work) == 1 and c.silent() and not transport.closed
    transport.finish_work()
    close = c.expect(ConnectionClose, 0)
    assert close.reply_code == 403 and transport.closed


def test_a_connection_gone_before_the_answer_is_left_alone() -> None:
    broker = Broker()
    c, transport = client(broker)
    c.send(PROTOCOL_HEADER)
    c.expect(ConnectionStart, 0)
    c.send(start_ok("guest"))
    c.conn.connection_lost()
    transport.finish_work()  # the answer arrives for a closed connection: nothing is written
    assert c.silent() and c.conn.closed


def test_unknown_users_and_password_changes_fail_after_the_check() -> None:
    broker = Broker()
    auth = broker.auth
    pending = auth.login("PLAIN", b"\x00nobody\x00", "127.0.0.1")
    assert isinstance(pending, PendingLogin) and not pending.check()  # the dummy hash never matches
    pending = auth.login("PLAIN", b"\x00guest\x00guest", "127.0.0.1")
    assert isinstance(pending, PendingLogin) and pending.check()
    broker.access.change_password("guest", "changed")  # while the check ran
    with pytest.raises(AuthFailure, match="invalid credentials"):
        auth.finish(pending, True)


# -- the scheduler behind the connections -------------------------------------------------------------


class Workers:
    """The broker's worker threads, run when the test says so; timers never fire by themselves."""

    def __init__(self, broker: Broker) -> None:
        self.work: list[tuple[Callable[[], bool], Callable[[bool], None]]] = []
        self.timers = CollectingTransport()
        broker.auth.checks.runner = self

    def run(self, work: Callable[[], bool], finished: Callable[[bool], None]) -> None:
        self.work.append((work, finished))

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return self.timers.call_later(delay, callback)

    def finish_one(self) -> None:
        work, done = self.work.pop(0)
        done(work())


def start_login(broker: Broker, user: str, password: str, host: str = "127.0.0.1") -> Client:
    c = Client(broker, peer=(host, 40000))
    c.send(PROTOCOL_HEADER)
    c.expect(ConnectionStart, 0)
    response = b"\x00" + user.encode() + b"\x00" + password.encode()
    properties = {"capabilities": CLIENT_CAPABILITIES}
    c.send(encode_method_frame(0, ConnectionStartOk(properties, "PLAIN", response)))
    return c


def test_a_wrong_password_for_a_remembered_user_gets_the_full_check() -> None:
    broker = Broker()
    workers = Workers(broker)
    good = start_login(broker, "guest", "guest")
    workers.finish_one()
    good.expect(ConnectionTune, 0)
    assert start_login(broker, "guest", "guest").conn.state == "tuning"  # remembered: no check
    # A wrong one is not refused at once (that would tell the user exists): it waits for a check,
    # as a login of an unknown user does.
    wrong = start_login(broker, "guest", "wrong")
    unknown = start_login(broker, "nobody", "wrong")
    assert wrong.silent() and unknown.silent() and len(workers.work) == 1
    workers.finish_one()
    workers.finish_one()
    assert wrong.expect(ConnectionClose, 0).reply_code == 403
    assert unknown.expect(ConnectionClose, 0).reply_code == 403


def test_a_login_pushed_out_of_a_full_queue_is_refused_after_a_pause() -> None:
    broker = Broker()
    workers = Workers(broker)
    broker.auth.checks.per_source = 3
    running = start_login(broker, "nobody", "guess-0")
    waiting = [start_login(broker, "nobody", f"guess-{i}") for i in (1, 2, 3)]
    guest = start_login(broker, "guest", "guest")  # the same address: the flood's oldest guess leaves
    assert waiting[0].transport.timers and waiting[0].silent()  # refused, but not yet answered
    waiting[0].transport.run_timers()
    assert waiting[0].expect(ConnectionClose, 0).reply_code == 403 and waiting[0].transport.closed
    assert waiting[0].conn.close_reason.startswith("login refused: user 'nobody' - refused unchecked")
    # The other user's login goes first among those waiting from this address.
    workers.finish_one()
    assert running.expect(ConnectionClose, 0).reply_code == 403
    workers.finish_one()
    guest.expect(ConnectionTune, 0)
    assert waiting[1].silent() and waiting[2].silent() and broker.auth.checks.queued == 1


def test_a_waiting_check_of_a_closed_connection_is_dropped() -> None:
    broker = Broker()
    workers = Workers(broker)
    start_login(broker, "nobody", "a")
    gone = start_login(broker, "nobody", "b")
    assert broker.auth.checks.queued == 1
    gone.conn.connection_lost()
    assert broker.auth.checks.queued == 0
    workers.finish_one()
    assert workers.work == []
