"""Dead lettering: the x-death header as RabbitMQ 3.10 writes it, routing keys and cycle detection."""

from __future__ import annotations

from typing import Any

from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.amqp.table import Long
from ottermq.broker import deadletter
from ottermq.broker.message import Message
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import content, publish


def _message(headers: dict[str, Any] | None = None, expiration: str | None = None) -> Message:
    props = encode_properties(BasicProperties(headers=headers, expiration=expiration, delivery_mode=2))
    return Message("ex", "rk", props, b"body")


def test_first_death() -> None:
    copy, keys = deadletter.dead_letter_copy(
        _message({"CC": ["cc1"]}, expiration="500"), "expired", "q1", "dlx", None, 1_700_000_000
    )
    assert keys == ["rk", "cc1"]
    assert (copy.exchange, copy.routing_key, copy.persistent) == ("dlx", "rk", True)
    props = copy.props
    assert props.expiration is None
    headers = props.headers
    assert headers is not None
    assert headers["x-first-death-reason"] == "expired"
    assert headers["x-first-death-queue"] == "q1"
    assert headers["x-first-death-exchange"] == "ex"
    [death] = headers["x-death"]
    assert death["count"] == 1
    assert death["reason"] == "expired"
    assert death["routing-keys"] == ["rk", "cc1"]
    assert death["original-expiration"] == "500"
    assert int(death["time"].timestamp()) == 1_700_000_000


def test_dead_letter_routing_key_drops_cc() -> None:
    copy, keys = deadletter.dead_letter_copy(_message({"CC": ["x"]}), "rejected", "q", "dlx", "new", 0)
    assert keys == ["new"]
    assert copy.routing_key == "new"
    assert "CC" not in (copy.headers or {})


def test_same_queue_and_reason_counts_up_and_moves_first() -> None:
    message = _message()
    first, _ = deadletter.dead_letter_copy(message, "rejected", "a", "dlx", None, 0)
    second, _ = deadletter.dead_letter_copy(first, "expired", "b", "dlx", None, 0)
    third, _ = deadletter.dead_letter_copy(second, "rejected", "a", "dlx", None, 0)
    deaths = (third.headers or {})["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        ("a", "rejected", 2),
        ("b", "expired", 1),
    ]
    assert (third.headers or {})["x-first-death-queue"] == "a"


def test_x_death_count_travels_as_a_64_bit_field() -> None:
    """RabbitMQ sends x-death counts as 'l' (signed 64-bit); clients that read them as longs break on a
    32-bit 'I'. A count decoded from the wire keeps that type when the headers are written again."""
    first, _ = deadletter.dead_letter_copy(_message(), "rejected", "a", "dlx", None, 0)
    assert b"\x05countl\x00\x00\x00\x00\x00\x00\x00\x01" in first.properties
    second, _ = deadletter.dead_letter_copy(first, "rejected", "a", "dlx", None, 0)
    assert b"\x05countl\x00\x00\x00\x00\x00\x00\x00\x02" in second.properties
    # A user header sent as 'l' with a small value stays 'l' through the rewrite.
    sent = _message({"big": Long(7), "small": 7})
    third, _ = deadletter.dead_letter_copy(sent, "expired", "q", "dlx", None, 0)
    assert b"\x03bigl\x00\x00\x00\x00\x00\x00\x00\x07" in third.properties
    assert b"\x05smallI\x00\x00\x00\x07" in third.properties


def test_cycles_without_a_reject_are_cut() -> None:
    vhost = VHost()
    vhost.declare_queue("a")
    once, keys = deadletter.dead_letter_copy(_message(), "expired", "a", "", "a", 0)
    assert deadletter.route_dead_letter(vhost, "", once, keys, "expired") == []
    # A reject anywhere in the cycle makes it deliberate: the message goes round again.
    rejected, keys = deadletter.dead_letter_copy(_message(), "rejected", "a", "", "a", 0)
    assert [q.name for q in deadletter.route_dead_letter(vhost, "", rejected, keys, "rejected")] == ["a"]
    # Rejected in a, expired in b, back to a: the reject is inside the cycle, so it is allowed.
    vhost.declare_queue("b")
    via_b, keys = deadletter.dead_letter_copy(rejected, "expired", "b", "", "a", 0)
    assert [q.name for q in deadletter.route_dead_letter(vhost, "", via_b, keys, "expired")] == ["a"]
    # Expired in a straight after: the newest death of a has no reject before it, so that is a cycle.
    again, keys = deadletter.dead_letter_copy(rejected, "expired", "a", "", "a", 0)
    assert deadletter.route_dead_letter(vhost, "", again, keys, "expired") == []


def test_missing_exchange_routes_nowhere() -> None:
    vhost = VHost()
    copy, keys = deadletter.dead_letter_copy(_message(), "rejected", "a", "nope", None, 0)
    assert deadletter.route_dead_letter(vhost, "nope", copy, keys, "rejected") == []


def test_rejected_message_reaches_the_dead_letter_queue() -> None:
    vhost = VHost()
    vhost.declare_exchange("dlx", "fanout")
    dead = vhost.declare_queue("dead")
    vhost.bind_queue("dead", "dlx")
    source = vhost.declare_queue("src", arguments={"x-dead-letter-exchange": "dlx"})
    assert publish(vhost, "", "src", b"m") == ["src"]
    entry = source.get()
    assert entry is not None
    source.settle([entry], "reject")
    got = dead.get()
    assert got is not None and content(dead, got).body == b"m"
    assert (content(dead, got).headers or {})["x-death"][0]["reason"] == "rejected"
