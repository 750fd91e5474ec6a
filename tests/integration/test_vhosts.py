"""Virtual hosts: who may open one, what deleting one does, and what deleting a user does.

Runs against RabbitMQ too (OTTERMQ_TEST_URL), with users and vhosts made by rabbitmqctl.
"""

from __future__ import annotations

import time
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo, unique
from tests.integration.test_access_admin import Admin, admin  # noqa: F401 - the fixture


def refused_open(admin: Admin, user: str, password: str, vhost: str) -> str:  # noqa: F811
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
        admin.connect(user, password, vhost)
    return str(caught.value)


def test_unknown_vhost_is_530(admin: Admin) -> None:  # noqa: F811
    vhost = unique("missing")
    assert f"(530) 'NOT_ALLOWED - vhost {vhost} not found'" in refused_open(admin, "guest", "guest", vhost)


def test_vhost_without_permissions_is_530(admin: Admin) -> None:  # noqa: F811
    vhost = admin.add_vhost(unique("vh"))
    user = admin.add_user(unique("u"), "pw")
    text = f"(530) \"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'\""
    assert text in refused_open(admin, user, "pw", vhost)
    admin.set_permissions(user, vhost, "", "", "")  # empty permissions still open the vhost
    admin.connect(user, "pw", vhost).close()
    admin.clear_permissions(user, vhost)
    assert text in refused_open(admin, user, "pw", vhost)


def test_vhosts_are_separate(admin: Admin) -> None:  # noqa: F811
    first, second = admin.add_vhost(unique("vh")), admin.add_vhost(unique("vh"))
    for vhost in (first, second):
        admin.set_permissions("guest", vhost, ".*", ".*", ".*")
    a = admin.connect("guest", "guest", first)
    b = admin.connect("guest", "guest", second)
    try:
        a.channel().queue_declare("shared-name")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            b.channel().queue_declare("shared-name", passive=True)
        assert caught.value.reply_code == 404
        assert caught.value.reply_text == f"NOT_FOUND - no queue 'shared-name' in vhost '{second}'"
    finally:
        a.close()
        b.close()


def wait_closed(conn: pika.BlockingConnection, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn.process_data_events(time_limit=0.1)
        except pika.exceptions.ConnectionClosedByBroker as exc:
            return exc
    raise AssertionError("the broker did not close the connection")


def test_deleting_a_vhost_closes_its_connections_and_drops_its_queues(admin: Admin) -> None:  # noqa: F811
    vhost = admin.add_vhost(unique("vh"))
    admin.set_permissions("guest", vhost, ".*", ".*", ".*")
    conn = admin.connect("guest", "guest", vhost)
    other = admin.connect("guest", "guest", "/")
    try:
        ch = conn.channel()
        ch.queue_declare("kept", durable=True)
        ch.basic_publish("", "kept", b"m", pika.BasicProperties(delivery_mode=2))
        admin.delete_vhost(vhost)
        closed = wait_closed(conn)
        # RabbitMQ says "is deleted", or "is down" when the vhost's processes stop first (a race).
        assert closed.reply_code == 320
        assert closed.reply_text in (
            f"CONNECTION_FORCED - vhost '{vhost}' is deleted",
            f"CONNECTION_FORCED - vhost '{vhost}' is down",
        )
        assert other.is_open
        other.channel().queue_declare("", exclusive=True)
        admin.add_vhost(vhost)
        admin.set_permissions("guest", vhost, ".*", ".*", ".*")
        again = admin.connect("guest", "guest", vhost)
        try:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
                again.channel().queue_declare("kept", passive=True)
            assert caught.value.reply_code == 404
        finally:
            again.close()
    finally:
        other.close()


def test_deleting_a_user_closes_its_connections(admin: Admin, broker: BrokerInfo) -> None:  # noqa: F811
    vhost = admin.add_vhost(unique("vh"))
    user = admin.add_user(unique("u"), "pw")
    admin.set_permissions(user, vhost, ".*", ".*", ".*")
    conn = admin.connect(user, "pw", vhost)
    admin.delete_user(user)
    closed = wait_closed(conn)
    assert (closed.reply_code, closed.reply_text) == (320, f"CONNECTION_FORCED - user '{user}' is deleted")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        admin.connect(user, "pw", vhost)


def test_changed_password(admin: Admin) -> None:  # noqa: F811
    vhost = admin.add_vhost(unique("vh"))
    user = admin.add_user(unique("u"), "old")
    admin.set_permissions(user, vhost, ".*", ".*", ".*")
    admin.connect(user, "old", vhost).close()
    admin.call("change_password", name=user, password="new")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        admin.connect(user, "old", vhost)
    admin.connect(user, "new", vhost).close()
