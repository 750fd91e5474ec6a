"""Per-user limits: set_user_limits / clear_user_limits / list_user_limits, max-connections refused at
connection.open and max-channels at channel.open with RabbitMQ's codes and texts, lifting a limit, and
limits surviving a restart (clean or kill -9).

Against RabbitMQ (OTTERMQ_TEST_URL) the same tests drive `rabbitmqctl` (the Admin of test_vhost_limits),
so the texts and the verbs' output are RabbitMQ 3.10's; the restart tests and --json are OtterMQ's own.
"""

from __future__ import annotations

import json
import shutil
import signal
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika import frame, spec

from tests.integration.conftest import BrokerInfo, broker_error, unique
from tests.integration.test_ctl import connect, start_broker, stop_broker
from tests.integration.test_raw import RawClient
from tests.integration.test_vhost_limits import Admin, retry

pytestmark = pytest.mark.timeout(90)

PROTOCOL_HEADER = b"AMQP" + struct.pack("BBBB", 0, 0, 9, 1)


@pytest.fixture
def admin(broker: BrokerInfo) -> Admin:
    if broker.external and shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl to manage the external broker")
    return Admin(broker.data_dir)


@pytest.fixture
def user(admin: Admin) -> Iterator[str]:
    """A fresh user (password = its name) with every permission on "/"; deleted afterwards."""
    name = unique("ul")
    admin.ok("add_user", name, name)
    try:
        admin.ok("set_permissions", name, ".*", ".*", ".*")
        yield name
    finally:
        admin("delete_user", name)


@pytest.fixture
def vhost(admin: Admin, user: str) -> Iterator[str]:
    """A fresh vhost on which `user` has every permission."""
    name = unique("ulv")
    admin.ok("add_vhost", name)
    try:
        admin.ok("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield name
    finally:
        admin("delete_vhost", name)


def open_as(broker: BrokerInfo, user: str, vhost: str = "/") -> pika.BlockingConnection:
    params = broker.params(virtual_host=vhost, credentials=pika.PlainCredentials(user, user))
    return pika.BlockingConnection(params)


def refused_connection(call: Callable[[], Any]) -> str:
    """The text of the 530 a refused connection.open got."""
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
        call()
    return str(caught.value)


def settle(broker: BrokerInfo) -> None:
    """RabbitMQ counts connections and channels asynchronously (its tracking tables); give it a moment."""
    if broker.external:
        time.sleep(1.0)


# -- the verbs --------------------------------------------------------------------------------------------


def test_set_merges_list_and_clear(admin: Admin, user: str) -> None:
    assert admin.ok("set_user_limits", user, '{"max-connections": 3}') == (
        f'Setting user limits to "{{"max-connections": 3}}" for user "{user}" ...\n'
    )
    # A second definition is merged into the first (set_vhost_limits replaces; set_user_limits adds).
    admin.ok("set_user_limits", user, '{"max-channels": 4}')
    assert admin.ok("list_user_limits", "--user", user) == (
        f'Listing limits for user "{user}" ...\n{{"max-channels":4,"max-connections":3}}\n'
    )
    lines = admin.ok("list_user_limits", "--global").splitlines()
    assert lines[:2] == ["Listing limits for all users ...", "user\tlimits"]
    assert f'{user}\t{{"max-channels":4,"max-connections":3}}' in lines
    admin.ok("set_user_limits", user, '{"max-connections": 5}')
    assert admin.ok("list_user_limits", "--user", user).splitlines()[1:] == [
        '{"max-channels":4,"max-connections":5}'
    ]
    assert admin.ok("clear_user_limits", user, "max-connections") == (
        f'Clearing "max-connections" limit for user "{user}" ...\n'
    )
    assert admin.ok("list_user_limits", "--user", user).splitlines()[1:] == ['{"max-channels":4}']
    # An unknown or absent limit is nothing to clear.
    admin.ok("clear_user_limits", user, "max-queues")
    assert admin.ok("clear_user_limits", user, "all") == f'Clearing all limits for user "{user}" ...\n'
    assert admin.ok("list_user_limits", "--user", user).splitlines()[1:] == ["{}"]
    assert f"{user}\t" not in admin.ok("list_user_limits", "--global")
    admin.ok("set_user_limits", user, "{}")
    assert admin.ok("list_user_limits", "--user", user).splitlines()[1:] == ["{}"]


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        ('{"max-connections": "x"}', ["max-connections should be a", "actually was", "x"]),
        ('{"max-connections": 1.5}', ["max-connections should be a", "actually was 1.5"]),
        ('{"max-queues": 3}', ["nrecognised terms", "max-queues", "in user-limits"]),
        ("[1]", ["nrecognised terms", "in user-limits"]),
        ("notjson", ["JSON decoding error. Reason: badarg"]),
    ],
)
def test_bad_definitions_are_refused(admin: Admin, user: str, definition: str, words: list[str]) -> None:
    status, _, err = admin("set_user_limits", user, definition)
    assert status == 69  # as rabbitmqctl
    for word in words:
        assert word in err
    assert admin.ok("list_user_limits", "--user", user).splitlines()[1:] == ["{}"]


def test_a_missing_user_is_refused(admin: Admin) -> None:
    for argv in (
        ("set_user_limits", "no-such-user-here", '{"max-connections": 3}'),
        ("clear_user_limits", "no-such-user-here", "all"),
        ("list_user_limits", "--user", "no-such-user-here"),
    ):
        status, _, err = admin(*argv)
        assert status == 69, argv
        assert "no-such-user-here" in err


def test_json_output(admin: Admin, user: str) -> None:
    if admin.external:
        pytest.skip("--json is ottermq ctl's")
    admin.ok("set_user_limits", user, '{"max-channels": 2}')
    code, out, _ = admin("list_user_limits", "--user", user, json_out=True)
    assert code == 0
    assert json.loads(out) == [{"user": user, "limits": {"max-channels": 2}}]
    code, out, _ = admin("list_user_limits", "--global", json_out=True)
    assert {"user": user, "limits": {"max-channels": 2}} in json.loads(out)


# -- enforcement -----------------------------------------------------------------------------------------


def test_max_connections_counts_every_vhost(admin: Admin, broker: BrokerInfo, user: str, vhost: str) -> None:
    admin.ok("set_user_limits", user, '{"max-connections": 1}')
    first = retry(lambda: open_as(broker, user))
    try:
        settle(broker)
        expected = (
            f"(530) \"NOT_ALLOWED - connection refused for user '{user}': "
            'user connection limit (1) is reached"'
        )
        assert expected in refused_connection(lambda: open_as(broker, user))
        assert expected in refused_connection(lambda: open_as(broker, user, vhost))
    finally:
        first.close()
    # The first one gone, a new one fits again.
    retry(lambda: open_as(broker, user, vhost)).close()
    admin.ok("set_user_limits", user, '{"max-connections": 0}')
    assert "user connection limit (0) is reached" in refused_connection(lambda: open_as(broker, user))
    # A negative limit is no limit; lifting it lets connections in again.
    admin.ok("set_user_limits", user, '{"max-connections": -1}')
    retry(lambda: open_as(broker, user)).close()
    admin.ok("set_user_limits", user, '{"max-connections": 0}')
    admin.ok("clear_user_limits", user, "max-connections")
    retry(lambda: open_as(broker, user)).close()


def test_refusal_order_at_connection_open(admin: Admin, broker: BrokerInfo, user: str, vhost: str) -> None:
    """RabbitMQ checks the vhost's connection limit, then the user's, then the vhost permission."""
    admin.ok("set_user_limits", user, '{"max-connections": 0}')
    admin.ok("set_vhost_limits", "-p", vhost, '{"max-connections": 0}')
    text = refused_connection(lambda: open_as(broker, user, vhost))
    assert f"access to vhost '{vhost}' refused for user '{user}': connection limit (0) is reached" in text
    admin.ok("clear_vhost_limits", "-p", vhost)
    admin.ok("clear_permissions", "-p", vhost, user)
    text = refused_connection(lambda: open_as(broker, user, vhost))
    assert f"connection refused for user '{user}': user connection limit (0) is reached" in text
    # A vhost that does not exist is named first of all.
    text = refused_connection(lambda: open_as(broker, user, "no-such-vhost-here"))
    assert "NOT_ALLOWED - vhost no-such-vhost-here not found" in text


def test_max_channels_counts_every_connection(admin: Admin, broker: BrokerInfo, user: str) -> None:
    admin.ok("set_user_limits", user, '{"max-channels": 2}')
    one, two = open_as(broker, user), open_as(broker, user)
    try:
        one.channel()
        two.channel()
        settle(broker)
        code, text = broker_error(two.channel, pika.exceptions.ConnectionClosedByBroker)
        assert (code, text) == (
            530,
            f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed "
            "user limit of (2)",
        )
        assert one.is_open  # only the connection that asked is closed
        # Lifting the limit lets the user open more.
        admin.ok("clear_user_limits", user, "max-channels")
        three = open_as(broker, user)
        try:
            for _ in range(3):
                three.channel()
        finally:
            three.close()
    finally:
        for conn in (one, two):
            if conn.is_open:
                conn.close()


def test_max_channels_zero_refuses_the_first_channel_with_class_and_method_0(
    admin: Admin, broker: BrokerInfo, user: str
) -> None:
    admin.ok("set_user_limits", user, '{"max-channels": 0}')
    client = RawClient(broker.port)
    try:
        handshake(client, user)
        client.send_method(1, spec.Channel.Open())
        got = client.read_frame()
        assert isinstance(got, frame.Method) and got.channel_number == 0
        close = got.method
        assert isinstance(close, spec.Connection.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (530, 0, 0)
        assert close.reply_text == (
            f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed "
            "user limit of (0)"
        )
    finally:
        client.close()


def handshake(client: RawClient, user: str) -> None:
    """RawClient.handshake as `user` (password = name)."""
    client.send(PROTOCOL_HEADER)
    client.expect(spec.Connection.Start)
    response = b"\x00" + user.encode() + b"\x00" + user.encode()
    client.send_method(0, spec.Connection.StartOk(client_properties={}, mechanism="PLAIN", response=response))
    tune = client.expect(spec.Connection.Tune)
    client.send_method(0, spec.Connection.TuneOk(channel_max=tune.channel_max, frame_max=131072, heartbeat=0))
    client.send_method(0, spec.Connection.Open(virtual_host="/"))
    client.expect(spec.Connection.OpenOk)


def test_deleting_a_user_drops_its_limits(admin: Admin) -> None:
    name = unique("ul")
    admin.ok("add_user", name, uuid.uuid4().hex)
    try:
        admin.ok("set_user_limits", name, '{"max-connections": 1}')
        admin.ok("delete_user", name)
        admin.ok("add_user", name, uuid.uuid4().hex)
        assert admin.ok("list_user_limits", "--user", name).splitlines()[1:] == ["{}"]
    finally:
        admin("delete_user", name)


# -- durability ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_user_limits_survive_a_restart(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "data"
    process, port = start_broker(data_dir)
    try:
        admin = Admin(data_dir)
        for name in ("alice", "bob", "gone"):
            admin.ok("add_user", name, "pw")
            admin.ok("set_permissions", name, ".*", ".*", ".*")
        admin.ok("set_user_limits", "alice", '{"max-connections": 1, "max-channels": 5}')
        admin.ok("set_user_limits", "alice", '{"max-channels": 1}')
        admin.ok("set_user_limits", "bob", '{"max-connections": 2}')
        admin.ok("clear_user_limits", "bob", "all")
        admin.ok("set_user_limits", "gone", '{"max-connections": 2}')
        admin.ok("delete_user", "gone")
        # kill -9 right after the last answer: ctl answers once the change is durable.
    finally:
        stop_broker(process, signal.SIGKILL if how == "kill-9" else signal.SIGTERM)
    process, port = start_broker(data_dir)
    try:
        admin = Admin(data_dir)
        code, out, _ = admin("list_user_limits", "--global", json_out=True)
        assert code == 0
        assert json.loads(out) == [{"user": "alice", "limits": {"max-connections": 1, "max-channels": 1}}]
        conn = connect(port, "alice", "pw", "/")
        try:
            with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
                connect(port, "alice", "pw", "/")
            conn.channel()
            assert broker_error(conn.channel, pika.exceptions.ConnectionClosedByBroker)[0] == 530
        finally:
            if conn.is_open:
                conn.close()
        connect(port, "bob", "pw", "/").close()
    finally:
        stop_broker(process)
