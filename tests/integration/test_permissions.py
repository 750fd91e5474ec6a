"""Permissions as RabbitMQ checks them: which method needs configure, write or read, and the 403 texts.

Each test gets a fresh vhost, a user with configure "^c", write "^w" and read "^r" on it, and guest with
everything there to set the scene. Names tell what the user may do: "cq" configure, "wq" write, "rq" read,
"zq" nothing. Run against RabbitMQ with OTTERMQ_TEST_URL (users made with rabbitmqctl) to compare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest

from tests.integration.conftest import BrokerInfo, broker_error, unique
from tests.integration.test_access_admin import Admin, admin  # noqa: F401 - the fixture

ChannelClosed = pika.exceptions.ChannelClosedByBroker


@dataclass
class Scene:
    vhost: str
    user: str
    conn: pika.BlockingConnection  # as the user
    setup: Any  # a channel as guest, with every permission on the vhost

    def channel(self) -> Any:
        return self.conn.channel()

    def refused(self, kind: str, name: str) -> tuple[int, str]:
        where = f"in vhost '{self.vhost}' refused for user '{self.user}'"
        return 403, f"ACCESS_REFUSED - access to {kind} '{name}' {where}"


@pytest.fixture
def scene(broker: BrokerInfo, admin: Admin) -> Iterator[Scene]:  # noqa: F811
    vhost = admin.add_vhost(unique("vh"))
    user = admin.add_user(unique("u"), "pw")
    admin.set_permissions(user, vhost, "^c", "^w", "^r")
    admin.set_permissions("guest", vhost, ".*", ".*", ".*")
    guest = admin.connect("guest", "guest", vhost)
    setup = guest.channel()
    for queue in ("zq", "wq", "rq", "cq"):
        setup.queue_declare(queue)
    for exchange in ("zx", "wx", "rx"):
        setup.exchange_declare(exchange, "direct")
    setup.queue_bind("wq", "rx", "k")
    conn = admin.connect(user, "pw", vhost)
    try:
        yield Scene(vhost, user, conn, setup)
    finally:
        for c in (conn, guest):
            if c.is_open:
                c.close()


def error(call: Callable[[], object]) -> tuple[int, str]:
    return broker_error(call, ChannelClosed)


# -- configure -------------------------------------------------------------------------------------------


def test_queue_declare_needs_configure(scene: Scene) -> None:
    assert error(lambda: scene.channel().queue_declare("zq")) == scene.refused("queue", "zq")
    scene.channel().queue_declare("cq")
    scene.channel().queue_declare("cnew")


def test_passive_declares_need_no_permission(scene: Scene) -> None:
    ch = scene.channel()
    ch.queue_declare("zq", passive=True)
    ch.exchange_declare("zx", passive=True)
    ch.exchange_declare("amq.direct", passive=True)


def test_server_named_queue_is_checked_under_its_name(scene: Scene) -> None:
    code, text = error(lambda: scene.channel().queue_declare(""))
    assert code == 403
    assert text.startswith("ACCESS_REFUSED - access to queue 'amq.gen-")
    assert text.endswith(f"' in vhost '{scene.vhost}' refused for user '{scene.user}'")


def test_reserved_queue_name_comes_before_permissions(scene: Scene) -> None:
    assert error(lambda: scene.channel().queue_declare("amq.q")) == (
        403,
        "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'",
    )


def test_exchange_declare_and_delete_need_configure(scene: Scene) -> None:
    refused = scene.refused("exchange", "zx2")
    assert error(lambda: scene.channel().exchange_declare("zx2", "fanout")) == refused
    assert error(lambda: scene.channel().exchange_delete("zx")) == scene.refused("exchange", "zx")
    ch = scene.channel()
    ch.exchange_declare("cx", "fanout")
    ch.exchange_delete("cx")


def test_unknown_exchange_type_is_503_before_permissions(scene: Scene) -> None:
    code, text = broker_error(
        lambda: scene.channel().exchange_declare("zx9", "no-such-type"),
        pika.exceptions.ConnectionClosedByBroker,
    )
    assert (code, text) == (503, "COMMAND_INVALID - unknown exchange type 'no-such-type'")


def test_system_exchange_deletion_comes_before_permissions(scene: Scene) -> None:
    assert error(lambda: scene.channel().exchange_delete("amq.direct")) == (
        403,
        f"ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '{scene.vhost}' not allowed",
    )


def test_queue_delete_needs_configure(scene: Scene) -> None:
    assert error(lambda: scene.channel().queue_delete("zq")) == scene.refused("queue", "zq")
    scene.channel().queue_delete("cq")


def test_dead_letter_exchange_needs_read_on_the_queue(scene: Scene) -> None:
    args = {"x-dead-letter-exchange": "wx"}
    refused = scene.refused("queue", "cdl")
    assert error(lambda: scene.channel().queue_declare("cdl", arguments=args)) == refused


def test_alternate_exchange_needs_read_on_the_exchange(scene: Scene) -> None:
    args = {"alternate-exchange": "wx"}
    call = lambda: scene.channel().exchange_declare("cae", "fanout", arguments=args)  # noqa: E731
    assert error(call) == scene.refused("exchange", "cae")


# -- write and read --------------------------------------------------------------------------------------


def test_publish_needs_write_on_the_exchange(scene: Scene) -> None:
    ch = scene.channel()
    ch.confirm_delivery()
    ch.basic_publish("wx", "k", b"ok")
    ch = scene.channel()
    ch.confirm_delivery()
    refused = scene.refused("exchange", "amq.direct")
    assert error(lambda: ch.basic_publish("amq.direct", "k", b"no")) == refused


def test_the_default_exchange_is_amq_default(scene: Scene) -> None:
    ch = scene.channel()
    ch.confirm_delivery()
    assert error(lambda: ch.basic_publish("", "wq", b"no")) == scene.refused("exchange", "amq.default")


def test_queue_bind_needs_write_on_queue_and_read_on_exchange(scene: Scene) -> None:
    scene.channel().queue_bind("wq", "rx", "k2")
    scene.channel().queue_unbind("wq", "rx", "k2")
    assert error(lambda: scene.channel().queue_bind("rq", "rx")) == scene.refused("queue", "rq")
    assert error(lambda: scene.channel().queue_bind("wq", "wx")) == scene.refused("exchange", "wx")
    assert error(lambda: scene.channel().queue_unbind("wq", "zx", "k")) == scene.refused("exchange", "zx")


def test_binding_to_the_default_exchange_is_refused_after_the_write_check(scene: Scene) -> None:
    assert error(lambda: scene.channel().queue_bind("wq", "")) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )
    assert error(lambda: scene.channel().queue_bind("zq", "")) == scene.refused("queue", "zq")


def test_exchange_bind_needs_write_on_destination_and_read_on_source(scene: Scene) -> None:
    scene.channel().exchange_bind("wx", "rx", "k")
    scene.channel().exchange_unbind("wx", "rx", "k")
    assert error(lambda: scene.channel().exchange_bind("zx", "rx")) == scene.refused("exchange", "zx")
    assert error(lambda: scene.channel().exchange_bind("wx", "zx")) == scene.refused("exchange", "zx")


def test_consume_get_and_purge_need_read(scene: Scene) -> None:
    ch = scene.channel()
    ch.basic_get("rq")
    ch.queue_purge("rq")
    ch.basic_consume("rq", lambda *a: None)
    assert error(lambda: scene.channel().basic_get("wq")) == scene.refused("queue", "wq")
    assert error(lambda: scene.channel().queue_purge("zq")) == scene.refused("queue", "zq")
    assert error(lambda: scene.channel().basic_consume("zq", lambda *a: None)) == scene.refused("queue", "zq")


def test_a_refused_check_reveals_nothing_about_existence(scene: Scene) -> None:
    assert error(lambda: scene.channel().basic_get("zmissing")) == scene.refused("queue", "zmissing")
    assert error(lambda: scene.channel().queue_delete("zmissing")) == scene.refused("queue", "zmissing")


# -- changes while connected -----------------------------------------------------------------------------


def test_changed_permissions_apply_to_new_channels(scene: Scene, admin: Admin) -> None:  # noqa: F811
    ch = scene.channel()
    ch.confirm_delivery()
    ch.basic_publish("wx", "k", b"before")
    admin.set_permissions(scene.user, scene.vhost, "^c", "^nothing", "^r")
    ch = scene.channel()
    ch.confirm_delivery()
    assert error(lambda: ch.basic_publish("wx", "k", b"after")) == scene.refused("exchange", "wx")
    admin.set_permissions(scene.user, scene.vhost, "^c", ".*", "^r")
    ch = scene.channel()
    ch.confirm_delivery()
    ch.basic_publish("zx", "k", b"now allowed")
