"""The method -> permission mapping for every AMQP method, the cached checks, and the connection's
vhost and mechanism checks, driven with plain frames."""

from __future__ import annotations

import pytest

from ottermq.amqp import methods as m
from ottermq.amqp.errors import ChannelError
from ottermq.amqp.methods import METHODS, ConnectionClose, ConnectionOpen, ConnectionStart, ConnectionTune
from ottermq.amqp.methods import ConnectionTuneOk as TuneOk
from ottermq.broker.access import AccessControl
from ottermq.broker.broker import Broker
from ottermq.broker.journal import MemoryJournal
from ottermq.broker.permissions import Guard, declare_extras, required

from .test_connection_harness import CLIENT_CAPABILITIES, Client, connected

# Every method that touches a resource, with the checks RabbitMQ makes, in order.
MAPPING = [
    (m.ExchangeDeclare(exchange="x"), "", (("configure", "exchange", "x"),)),
    (m.ExchangeDeclare(exchange="x", passive=True), "", ()),
    (m.ExchangeDeclare(exchange="amq.new"), "", (("configure", "exchange", "amq.new"),)),
    (m.ExchangeDeclare(exchange=""), "", ()),  # the vhost refuses the default exchange
    (m.ExchangeDelete(exchange="x"), "", (("configure", "exchange", "x"),)),
    (m.ExchangeDelete(exchange="amq.direct"), "", ()),  # "deletion of system exchange" comes first
    (m.ExchangeDelete(exchange=""), "", ()),
    (m.QueueDeclare(queue="q"), "q", (("configure", "queue", "q"),)),
    (m.QueueDeclare(queue="q", passive=True), "q", ()),
    (m.QueueDelete(queue="q"), "q", (("configure", "queue", "q"),)),
    (m.QueueBind(queue="q", exchange="x"), "q", (("write", "queue", "q"), ("read", "exchange", "x"))),
    (m.QueueUnbind(queue="q", exchange="x"), "q", (("write", "queue", "q"), ("read", "exchange", "x"))),
    (m.QueueBind(queue="q", exchange=""), "q", (("write", "queue", "q"),)),
    (m.QueueBind(queue="", exchange="x"), "last", (("write", "queue", "last"), ("read", "exchange", "x"))),
    (
        m.ExchangeBind(destination="d", source="s"),
        "",
        (("write", "exchange", "d"), ("read", "exchange", "s")),
    ),
    (
        m.ExchangeUnbind(destination="d", source="s"),
        "",
        (("write", "exchange", "d"), ("read", "exchange", "s")),
    ),
    (m.ExchangeBind(destination="", source="s"), "", (("write", "exchange", ""),)),
    (m.BasicPublish(exchange="x"), "", (("write", "exchange", "x"),)),
    (m.BasicPublish(exchange=""), "", (("write", "exchange", ""),)),
    (m.BasicConsume(queue="q"), "q", (("read", "queue", "q"),)),
    (m.BasicGet(queue="q"), "q", (("read", "queue", "q"),)),
    (m.QueuePurge(queue="q"), "q", (("read", "queue", "q"),)),
]
CHECKED = {type(method) for method, _, _ in MAPPING}


@pytest.mark.parametrize(("method", "queue", "checks"), MAPPING, ids=lambda v: getattr(v, "NAME", None))
def test_mapping(method: m.Method, queue: str, checks: tuple[tuple[str, str, str], ...]) -> None:
    assert required(method, queue) == checks


@pytest.mark.parametrize("cls", list(METHODS.values()), ids=lambda c: str(c.NAME))
def test_every_other_method_needs_nothing(cls: type[m.Method]) -> None:
    if cls in CHECKED:
        return
    assert required(cls(), "q") == ()


def test_declare_extras() -> None:
    assert declare_extras("queue", "q", {"x-dead-letter-exchange": "dlx"}) == (
        ("read", "queue", "q"),
        ("write", "exchange", "dlx"),
    )
    assert declare_extras("queue", "q", {"x-dead-letter-exchange": ""}) == (
        ("read", "queue", "q"),
        ("write", "exchange", ""),
    )
    assert declare_extras("exchange", "x", {"alternate-exchange": b"ae"}) == (
        ("read", "exchange", "x"),
        ("write", "exchange", "ae"),
    )
    assert declare_extras("queue", "q", {}) == ()
    assert declare_extras("exchange", "x", {"alternate-exchange": 5}) == ()


# -- the guard ----------------------------------------------------------------------------------------


def guard() -> tuple[AccessControl, Guard]:
    access = AccessControl(MemoryJournal())
    access.add_vhost("v")
    access.add_user("bob", "pw")
    access.set_permissions("bob", "v", "^c", "^w", "^r")
    return access, Guard(access, "bob", "v")


def test_refusal_text_and_default_exchange_name() -> None:
    _, g = guard()
    g.check("write", "exchange", "wx")
    with pytest.raises(ChannelError) as caught:
        g.check("write", "exchange", "")
    assert caught.value.reply_code == 403
    assert caught.value.reply_text == (
        "ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'v' refused for user 'bob'"
    )
    with pytest.raises(ChannelError, match="access to queue 'zq' in vhost 'v' refused for user 'bob'"):
        g.check("read", "queue", "zq")


def test_publish_cache_is_forgotten_on_reset() -> None:
    access, g = guard()
    g.check_publish("wx")
    assert "wx" in g.writable
    access.set_permissions("bob", "v", "^c", "^nothing", "^r")
    g.reset()
    assert not g.writable
    with pytest.raises(ChannelError):
        g.check_publish("wx")


# -- through a connection ----------------------------------------------------------------------------


def login(client: Client, user: str, password: str, vhost: str) -> None:
    client.start()
    client.login(b"\x00" + user.encode() + b"\x00" + password.encode())
    tune = client.expect(ConnectionTune, 0)
    client.method(0, TuneOk(tune.channel_max, tune.frame_max, 0))
    client.method(0, ConnectionOpen(vhost))


def broker_with_bob() -> Broker:
    broker = Broker()
    broker.add_vhost("v")
    broker.access.add_user("bob", "pw")
    return broker


def test_open_without_permissions_is_530() -> None:
    client = Client(broker_with_bob())
    login(client, "bob", "pw", "v")
    close = client.expect(ConnectionClose, 0)
    assert close.reply_code == 530
    assert close.reply_text == "NOT_ALLOWED - access to vhost 'v' refused for user 'bob'"
    assert (close.class_id, close.method_id) == (10, 40)


def test_open_unknown_vhost_is_530() -> None:
    client = Client(broker_with_bob())
    login(client, "guest", "guest", "nope")
    close = client.expect(ConnectionClose, 0)
    assert (close.reply_code, close.reply_text) == (530, "NOT_ALLOWED - vhost nope not found")


def test_permission_changes_reach_open_connections() -> None:
    broker = broker_with_bob()
    broker.access.set_permissions("bob", "v", ".*", ".*", ".*")
    client = Client(broker)
    login(client, "bob", "pw", "v")
    client.expect(m.ConnectionOpenOk, 0)
    client.open_channel(1)
    client.method(1, m.ConfirmSelect())
    client.expect(m.ConfirmSelectOk, 1)
    client.publish(1, "amq.fanout", "", b"one")
    client.expect(m.BasicAck, 1)
    broker.access.set_permissions("bob", "v", ".*", "^nothing$", ".*")
    client.publish(1, "amq.fanout", "", b"two")
    close = client.expect(m.ChannelClose, 1)
    assert close.reply_code == 403
    assert close.reply_text == (
        "ACCESS_REFUSED - access to exchange 'amq.fanout' in vhost 'v' refused for user 'bob'"
    )
    assert (close.class_id, close.method_id) == (60, 40)


def test_external_is_offered_only_with_a_client_certificate() -> None:
    plain = Client(broker_with_bob())
    start = plain.start()
    assert start.mechanisms == b"PLAIN AMQPLAIN"
    plain.method(0, m.ConnectionStartOk({"capabilities": CLIENT_CAPABILITIES}, "EXTERNAL", b"", "en_US"))
    close = plain.expect(ConnectionClose, 0)
    assert close.reply_code == 503 and "unknown authentication mechanism 'EXTERNAL'" in close.reply_text

    broker = broker_with_bob()
    broker.access.set_permissions("bob", "v", ".*", ".*", ".*")
    tls = Client(broker)
    tls.transport.peer_cert_cn = "bob"
    assert tls.start().mechanisms == b"PLAIN AMQPLAIN EXTERNAL"
    tls.method(0, m.ConnectionStartOk({"capabilities": CLIENT_CAPABILITIES}, "EXTERNAL", b"", "en_US"))
    tune = tls.expect(ConnectionTune, 0)
    tls.method(0, TuneOk(tune.channel_max, tune.frame_max, 0))
    tls.method(0, ConnectionOpen("v"))
    tls.expect(m.ConnectionOpenOk, 0)
    assert tls.conn.user == "bob"


def test_external_with_an_unknown_cn_is_refused() -> None:
    client = Client(broker_with_bob())
    client.transport.peer_cert_cn = "mallory"
    assert isinstance(client.start(), ConnectionStart)
    client.method(0, m.ConnectionStartOk({"capabilities": CLIENT_CAPABILITIES}, "EXTERNAL", b"", "en_US"))
    close = client.expect(ConnectionClose, 0)
    assert close.reply_code == 403
    assert "Login was refused using authentication mechanism EXTERNAL" in close.reply_text
    assert client.transport.closed


def test_vhost_deletion_closes_its_connections_with_320() -> None:
    broker = Broker()
    broker.add_vhost("v")
    broker.access.set_permissions("guest", "v", ".*", ".*", ".*")
    inside = Client(broker)
    login(inside, "guest", "guest", "v")
    inside.expect(m.ConnectionOpenOk, 0)
    outside = connected(broker)
    broker.delete_vhost("v")
    close = inside.expect(ConnectionClose, 0)
    assert (close.reply_code, close.reply_text) == (320, "CONNECTION_FORCED - vhost 'v' is deleted")
    assert outside.silent() and outside.conn.state == "running"
