"""Topic permissions: set_topic_permissions / clear_topic_permissions / list_topic_permissions /
list_user_topic_permissions, and their enforcement on topic exchanges as RabbitMQ 3.10 does it: a publish's
routing key against `write`, a binding's (queue or exchange, bind or unbind) against `read` on its source,
with {username} and {vhost} expanded, 403 ACCESS_REFUSED with RabbitMQ's text; other exchange types and
exchanges without a topic permission are not checked. Durable across restarts (clean and kill -9).

Against RabbitMQ (OTTERMQ_TEST_URL) the same tests drive `rabbitmqctl`, so texts and output are RabbitMQ
3.10's; the restart test and --json are OtterMQ's own.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo, broker_error, unique
from tests.integration.test_ctl import connect, start_broker, stop_broker
from tests.integration.test_vhost_limits import Admin

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def admin(broker: BrokerInfo) -> Admin:
    if broker.external and shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl to manage the external broker")
    return Admin(broker.data_dir)


@pytest.fixture
def user(admin: Admin) -> Iterator[str]:
    """A fresh user (password = its name) with every permission on "/"; deleted afterwards."""
    name = unique("tp")
    admin.ok("add_user", name, name)
    try:
        admin.ok("set_permissions", name, ".*", ".*", ".*")
        yield name
    finally:
        admin("delete_user", name)


@pytest.fixture
def conn(broker: BrokerInfo, user: str) -> Iterator[pika.BlockingConnection]:
    params = broker.params(credentials=pika.PlainCredentials(user, user))
    connection = pika.BlockingConnection(params)
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def publish(conn: pika.BlockingConnection, exchange: str, routing_key: str) -> None:
    """Publish with confirms, so a refusal surfaces here."""
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(exchange, routing_key, b"x")
    ch.close()


def refused(routing_key: str, exchange: str, vhost: str, user: str) -> tuple[int, str]:
    return (
        403,
        f"ACCESS_REFUSED - access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' "
        f"refused for user '{user}'",
    )


# -- the verbs --------------------------------------------------------------------------------------------


def test_set_list_and_clear(admin: Admin, user: str) -> None:
    exchange = unique("tx")
    assert admin.ok("set_topic_permissions", user, "amq.topic", "^a\\.", "^b\\.") == (
        f'Setting topic permissions on "amq.topic" for user "{user}" in vhost "/" ...\n'
    )
    admin.ok("set_topic_permissions", user, exchange, "x", "y")  # the exchange need not exist
    lines = admin.ok("list_topic_permissions").splitlines()
    assert lines[:2] == ['Listing topic permissions for vhost "/" ...', "user\texchange\twrite\tread"]
    assert f"{user}\tamq.topic\t^a\\.\t^b\\." in lines
    assert f"{user}\t{exchange}\tx\ty" in lines
    # The user's own listing has no header line (as rabbitmqctl's); RabbitMQ's order is its table's.
    lines = admin.ok("list_user_topic_permissions", user).splitlines()
    assert lines[0] == f'Listing topic permissions for user "{user}" ...'
    assert sorted(lines[1:]) == sorted(["/\tamq.topic\t^a\\.\t^b\\.", f"/\t{exchange}\tx\ty"])
    # Setting the same exchange again replaces its pair.
    admin.ok("set_topic_permissions", user, exchange, "w2", "r2")
    assert f"/\t{exchange}\tw2\tr2" in admin.ok("list_user_topic_permissions", user).splitlines()
    assert admin.ok("clear_topic_permissions", user, exchange) == (
        f'Clearing topic permissions on "{exchange}" for user "{user}" in vhost "/" ...\n'
    )
    assert admin.ok("list_user_topic_permissions", user).splitlines()[1:] == ["/\tamq.topic\t^a\\.\t^b\\."]
    admin.ok("clear_topic_permissions", user, "no.such.exchange")  # nothing to clear is fine
    assert admin.ok("clear_topic_permissions", user) == (
        f'Clearing topic permissions for user "{user}" in vhost "/" ...\n'
    )
    assert admin.ok("list_user_topic_permissions", user).strip().splitlines()[1:] == []


def test_refusals_of_the_verbs(admin: Admin, user: str) -> None:
    status, _, err = admin("set_topic_permissions", "no-such-user-here", "amq.topic", ".*", ".*")
    assert (status, "User no-such-user-here does not exist" in err) == (67, True)
    status, _, err = admin("set_topic_permissions", "-p", "no-such-vhost-here", user, "amq.topic", ".*", ".*")
    assert (status, "Virtual host no-such-vhost-here does not exist" in err) == (69, True)
    status, _, err = admin("set_topic_permissions", user, "amq.topic", "(", ".*")
    assert status == 69
    assert "(" in err
    status, _, err = admin("clear_topic_permissions", "no-such-user-here")
    assert (status, "User no-such-user-here does not exist" in err) == (67, True)
    status, _, err = admin("clear_topic_permissions", "-p", "no-such-vhost-here", user)
    assert (status, "Virtual host no-such-vhost-here does not exist" in err) == (69, True)
    status, _, err = admin("list_topic_permissions", "-p", "no-such-vhost-here")
    assert status == 65
    assert "Virtual host 'no-such-vhost-here' does not exist" in err
    status, _, err = admin("list_user_topic_permissions", "no-such-user-here")
    assert status == 69
    assert "no-such-user-here" in err


def test_json_output(admin: Admin, user: str) -> None:
    if admin.external:
        pytest.skip("--json is ottermq ctl's")
    admin.ok("set_topic_permissions", user, "amq.topic", "^a", "^b")
    code, out, _ = admin("list_user_topic_permissions", user, json_out=True)
    assert code == 0
    row = {"user": user, "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": "^b"}
    assert json.loads(out) == [row]


# -- enforcement -----------------------------------------------------------------------------------------


def test_publish_checks_the_routing_key_against_write(
    admin: Admin, user: str, conn: pika.BlockingConnection
) -> None:
    admin.ok("set_topic_permissions", user, "amq.topic", "^a\\.", "^b\\.")
    publish(conn, "amq.topic", "a.x")
    assert broker_error(lambda: publish(conn, "amq.topic", "b.x")) == refused("b.x", "amq.topic", "/", user)
    # "" is the empty name only.
    assert broker_error(lambda: publish(conn, "amq.topic", "")) == refused("", "amq.topic", "/", user)
    # A missing exchange is 404 before any routing-key check.
    code, _ = broker_error(lambda: publish(conn, unique("missing"), "b.x"))
    assert code == 404
    # Lifting the permission lets the key through at once (a channel's cached decisions are dropped).
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", "a.y", b"x")
    admin.ok("clear_topic_permissions", user, "amq.topic")
    ch.basic_publish("amq.topic", "b.x", b"x")
    ch.close()


def test_publish_in_a_transaction_is_checked_at_publish(
    admin: Admin, user: str, conn: pika.BlockingConnection
) -> None:
    admin.ok("set_topic_permissions", user, "amq.topic", "^a\\.", ".*")
    ch = conn.channel()
    ch.tx_select()
    ch.basic_publish("amq.topic", "z", b"x")
    assert broker_error(ch.tx_commit) == refused("z", "amq.topic", "/", user)


def test_bindings_check_the_routing_key_against_read(
    admin: Admin, user: str, conn: pika.BlockingConnection
) -> None:
    admin.ok("set_topic_permissions", user, "amq.topic", "^a\\.", "^b\\.")
    queue = unique("tq")
    ch = conn.channel()
    ch.queue_declare(queue, exclusive=True)
    ch.queue_bind(queue, "amq.topic", "b.#")
    ch.queue_unbind(queue, "amq.topic", "b.#")
    code_text = broker_error(lambda: conn.channel().queue_bind(queue, "amq.topic", "a.#"))
    assert code_text == refused("a.#", "amq.topic", "/", user)
    code_text = broker_error(lambda: conn.channel().queue_unbind(queue, "amq.topic", "a.#"))
    assert code_text == refused("a.#", "amq.topic", "/", user)
    # exchange.bind and unbind: the source's topic permission.
    ch = conn.channel()
    ch.exchange_bind("amq.fanout", "amq.topic", "b.x")
    ch.exchange_unbind("amq.fanout", "amq.topic", "b.x")
    code_text = broker_error(lambda: conn.channel().exchange_bind("amq.fanout", "amq.topic", "a.x"))
    assert code_text == refused("a.x", "amq.topic", "/", user)
    code_text = broker_error(lambda: conn.channel().exchange_unbind("amq.fanout", "amq.topic", "a.x"))
    assert code_text == refused("a.x", "amq.topic", "/", user)
    # The destination's topic permission is not asked.
    ch = conn.channel()
    ch.exchange_bind("amq.topic", "amq.direct", "a.x")
    ch.exchange_unbind("amq.topic", "amq.direct", "a.x")
    # Consuming needs no routing key: not checked.
    ch.basic_consume(queue, lambda *args: None)


def test_only_topic_exchanges_with_a_topic_permission_are_checked(
    admin: Admin, user: str, conn: pika.BlockingConnection
) -> None:
    direct, topic, queue = unique("td"), unique("tt"), unique("tq")
    ch = conn.channel()
    ch.exchange_declare(direct, "direct", auto_delete=True)
    ch.exchange_declare(topic, "topic", auto_delete=True)
    ch.queue_declare(queue, exclusive=True)
    ch.queue_bind(queue, direct, "keep")
    ch.queue_bind(queue, topic, "keep")
    admin.ok("set_topic_permissions", user, direct, "^a", "^a")
    admin.ok("set_topic_permissions", user, "amq.topic", "^a", "^a")
    publish(conn, direct, "z")
    ch = conn.channel()
    ch.queue_bind(queue, direct, "z")
    publish(conn, topic, "z")  # a topic exchange without a topic permission of its own
    ch.queue_bind(queue, topic, "z")


def test_variables_are_expanded(admin: Admin, user: str, broker: BrokerInfo) -> None:
    vhost = unique("tpv")
    admin.ok("add_vhost", vhost)
    try:
        admin.ok("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        admin.ok("set_topic_permissions", "-p", vhost, user, "amq.topic", "^{username}\\.", "^{vhost}\\.")
        params = broker.params(virtual_host=vhost, credentials=pika.PlainCredentials(user, user))
        conn = pika.BlockingConnection(params)
        try:
            publish(conn, "amq.topic", f"{user}.x")
            code_text = broker_error(lambda: publish(conn, "amq.topic", "alice.x"))
            assert code_text == refused("alice.x", "amq.topic", vhost, user)
            queue = unique("tq")
            ch = conn.channel()
            ch.queue_declare(queue, exclusive=True)
            ch.queue_bind(queue, "amq.topic", f"{vhost}.#")
            code_text = broker_error(lambda: conn.channel().queue_bind(queue, "amq.topic", f"{user}.#"))
            assert code_text == refused(f"{user}.#", "amq.topic", vhost, user)
        finally:
            if conn.is_open:
                conn.close()
    finally:
        admin("delete_vhost", vhost)


def test_deleting_a_user_drops_its_topic_permissions(admin: Admin) -> None:
    name = unique("tp")
    admin.ok("add_user", name, name)
    try:
        admin.ok("set_topic_permissions", name, "amq.topic", "a", "b")
        admin.ok("delete_user", name)
        admin.ok("add_user", name, name)
        assert admin.ok("list_user_topic_permissions", name).strip().splitlines()[1:] == []
    finally:
        admin("delete_user", name)


# -- durability ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_topic_permissions_survive_a_restart(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "data"
    process, port = start_broker(data_dir)
    try:
        admin = Admin(data_dir)
        admin.ok("add_user", "alice", "pw")
        admin.ok("set_permissions", "alice", ".*", ".*", ".*")
        admin.ok("add_vhost", "gone")
        admin.ok("set_permissions", "-p", "gone", "alice", ".*", ".*", ".*")
        admin.ok("set_topic_permissions", "alice", "amq.topic", "^{username}\\.", "^b")
        admin.ok("set_topic_permissions", "alice", "other", "x", "y")
        admin.ok("set_topic_permissions", "-p", "gone", "alice", "amq.topic", "x", "y")
        admin.ok("clear_topic_permissions", "alice", "other")
        admin.ok("delete_vhost", "gone")
    finally:
        stop_broker(process, signal.SIGKILL if how == "kill-9" else signal.SIGTERM)
    process, port = start_broker(data_dir)
    try:
        admin = Admin(data_dir)
        code, out, _ = admin("list_user_topic_permissions", "alice", json_out=True)
        assert code == 0
        row: dict[str, Any] = {
            "user": "alice",
            "vhost": "/",
            "exchange": "amq.topic",
            "write": "^{username}\\.",
            "read": "^b",
        }
        assert json.loads(out) == [row]
        conn = connect(port, "alice", "pw", "/")
        try:
            publish(conn, "amq.topic", "alice.x")
            assert broker_error(lambda: publish(conn, "amq.topic", "bob.x"))[0] == 403
        finally:
            conn.close()
    finally:
        stop_broker(process)
