"""Routing through a vhost: each exchange type, the default exchange, exchange-to-exchange chains and
cycles (each queue reached once), alternate exchanges, and publishing to internal exchanges."""

from __future__ import annotations

import pytest

from ottermq.amqp.errors import ChannelError
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import message, publish


@pytest.fixture
def vhost() -> VHost:
    vhost = VHost("/")
    for name in ("q1", "q2", "q3"):
        vhost.declare_queue(name)
    return vhost


def test_default_exchange_routes_by_queue_name(vhost: VHost) -> None:
    assert publish(vhost, "", "q2") == ["q2"]
    assert publish(vhost, "", "missing") == []
    vhost.delete_queue("q2")
    assert publish(vhost, "", "q2") == []
    vhost.declare_queue("q2")
    assert publish(vhost, "", "q2") == ["q2"]


def test_direct(vhost: VHost) -> None:
    vhost.bind_queue("q1", "amq.direct", "red")
    vhost.bind_queue("q2", "amq.direct", "red")
    vhost.bind_queue("q3", "amq.direct", "blue")
    assert publish(vhost, "amq.direct", "red") == ["q1", "q2"]
    assert publish(vhost, "amq.direct", "blue") == ["q3"]
    assert publish(vhost, "amq.direct", "green") == []


def test_fanout_ignores_the_key(vhost: VHost) -> None:
    vhost.bind_queue("q1", "amq.fanout", "a")
    vhost.bind_queue("q2", "amq.fanout", "b")
    assert publish(vhost, "amq.fanout", "whatever") == ["q1", "q2"]


def test_topic(vhost: VHost) -> None:
    vhost.bind_queue("q1", "amq.topic", "*.orange.*")
    vhost.bind_queue("q2", "amq.topic", "*.*.rabbit")
    vhost.bind_queue("q2", "amq.topic", "lazy.#")
    assert publish(vhost, "amq.topic", "quick.orange.rabbit") == ["q1", "q2"]
    assert publish(vhost, "amq.topic", "lazy.orange.elephant") == ["q1", "q2"]
    assert publish(vhost, "amq.topic", "lazy.pink.rabbit") == ["q2"]
    assert publish(vhost, "amq.topic", "quick.brown.fox") == []


def test_headers(vhost: VHost) -> None:
    vhost.bind_queue("q1", "amq.match", "", {"x-match": "any", "a": 1})
    msg = message("", headers={"a": 1})
    assert [q.name for q in vhost.route("amq.match", "", msg)] == ["q1"]


def test_unknown_exchange_name_is_404(vhost: VHost) -> None:
    with pytest.raises(ChannelError) as caught:
        vhost.route("nope", "k", message("k"))
    assert caught.value.reply_text == "NOT_FOUND - no exchange 'nope' in vhost '/'"


def test_publish_to_internal_exchange_is_refused(vhost: VHost) -> None:
    vhost.declare_exchange("int", "fanout", internal=True)
    with pytest.raises(ChannelError) as caught:
        vhost.exchange_for_publish("int")
    assert (caught.value.reply_code, caught.value.reply_text) == (
        403,
        "ACCESS_REFUSED - cannot publish to internal exchange 'int' in vhost '/'",
    )
    assert vhost.exchange_for_publish("amq.direct").name == "amq.direct"
    with pytest.raises(ChannelError):
        vhost.exchange_for_publish("nope")


def test_exchange_chain(vhost: VHost) -> None:
    vhost.declare_exchange("a", "direct")
    vhost.declare_exchange("b", "topic")
    vhost.declare_exchange("c", "fanout")
    vhost.bind_exchange("b", "a", "k.x")
    vhost.bind_exchange("c", "b", "k.*")
    vhost.bind_queue("q1", "a", "k.x")
    vhost.bind_queue("q2", "b", "#")
    vhost.bind_queue("q3", "c")
    assert publish(vhost, "a", "k.x") == ["q1", "q2", "q3"]
    assert publish(vhost, "a", "k.y") == []
    assert publish(vhost, "b", "k.y") == ["q2", "q3"]
    vhost.unbind_exchange("c", "b", "k.*")
    assert publish(vhost, "a", "k.x") == ["q1", "q2"]


def test_cycles_end_and_each_queue_gets_the_message_once(vhost: VHost) -> None:
    for name in ("a", "b", "c"):
        vhost.declare_exchange(name, "fanout")
    vhost.bind_exchange("b", "a")
    vhost.bind_exchange("c", "b")
    vhost.bind_exchange("a", "c")  # a -> b -> c -> a
    vhost.bind_exchange("a", "a")  # and a self-loop
    vhost.bind_queue("q1", "a")
    vhost.bind_queue("q1", "b")
    vhost.bind_queue("q2", "c")
    for start in ("a", "b", "c"):
        assert publish(vhost, start, "") == ["q1", "q2"]
    assert vhost.queues["q1"].ready_count == 3
    assert vhost.queues["q2"].ready_count == 3


def test_diamond_reaches_a_queue_once(vhost: VHost) -> None:
    for name in ("top", "left", "right", "bottom"):
        vhost.declare_exchange(name, "fanout")
    vhost.bind_exchange("left", "top")
    vhost.bind_exchange("right", "top")
    vhost.bind_exchange("bottom", "left")
    vhost.bind_exchange("bottom", "right")
    vhost.bind_queue("q1", "bottom")
    vhost.bind_queue("q1", "left")
    assert publish(vhost, "top", "") == ["q1"]
    assert vhost.queues["q1"].ready_count == 1


def test_deleting_a_middle_exchange_cuts_the_chain(vhost: VHost) -> None:
    vhost.declare_exchange("a", "fanout")
    vhost.declare_exchange("b", "fanout")
    vhost.bind_exchange("b", "a")
    vhost.bind_queue("q1", "b")
    vhost.delete_exchange("b")
    assert publish(vhost, "a", "") == []
    assert vhost.exchanges["a"].exchange_bindings == 0
    assert list(vhost.bindings()) == []


def test_alternate_exchange(vhost: VHost) -> None:
    vhost.declare_exchange("ae", "fanout")
    vhost.declare_exchange("main", "direct", arguments={"alternate-exchange": "ae"})
    vhost.bind_queue("q1", "main", "known")
    vhost.bind_queue("q2", "ae")
    assert publish(vhost, "main", "known") == ["q1"]
    assert publish(vhost, "main", "unknown") == ["q2"]
    vhost.delete_exchange("ae")
    assert publish(vhost, "main", "unknown") == []  # a missing alternate exchange is ignored


def test_alternate_exchange_cycle_ends(vhost: VHost) -> None:
    vhost.declare_exchange("x1", "direct", arguments={"alternate-exchange": "x2"})
    vhost.declare_exchange("x2", "direct", arguments={"alternate-exchange": "x1"})
    assert publish(vhost, "x1", "k") == []
