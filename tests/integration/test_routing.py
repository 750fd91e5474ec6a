"""Routing by exchange type: default, direct, fanout, topic (edge cases of `*` and `#`) and headers.

Each case binds fresh exclusive queues, publishes on the same channel, and reads the queues back with
basic.get: on one channel the broker has routed a publish before it answers a later get.
"""

from __future__ import annotations

from typing import Any

import pika
import pytest

from tests.integration.conftest import Resources, broker_error, routed, unique


def test_default_exchange_routes_by_queue_name(channel: Any) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    assert routed(channel, "", queue, {"q": queue}) == {"q"}
    assert routed(channel, "", queue + ".nope", {"q": queue}) == set()


def test_default_exchange_refuses_bindings(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    assert broker_error(lambda: ch.queue_bind(queue, "", "k")) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )


def test_direct_exact_key(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "direct")
    a = channel.queue_declare("", exclusive=True).method.queue
    b = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(a, exchange, "red")
    channel.queue_bind(b, exchange, "red")
    channel.queue_bind(b, exchange, "green")
    queues = {"a": a, "b": b}
    assert routed(channel, exchange, "red", queues) == {"a", "b"}
    assert routed(channel, exchange, "green", queues) == {"b"}
    assert routed(channel, exchange, "Red", queues) == set()
    assert routed(channel, exchange, "", queues) == set()


def test_amq_direct_routes(channel: Any) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    key = unique("k")
    channel.queue_bind(queue, "amq.direct", key)
    assert routed(channel, "amq.direct", key, {"q": queue}) == {"q"}


def test_fanout_ignores_key(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "fanout")
    a = channel.queue_declare("", exclusive=True).method.queue
    b = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(a, exchange, "ignored")
    channel.queue_bind(b, exchange, "")
    assert routed(channel, exchange, "anything", {"a": a, "b": b}) == {"a", "b"}


def test_same_queue_bound_twice_gets_one_copy(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "topic")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "a.*")
    channel.queue_bind(queue, exchange, "*.b")
    channel.queue_bind(queue, exchange, "#")
    assert routed(channel, exchange, "a.b", {"q": queue}) == {"q"}


def test_unbind_stops_routing(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "direct")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "k")
    channel.queue_unbind(queue, exchange, "k")
    assert routed(channel, exchange, "k", {"q": queue}) == set()
    channel.queue_unbind(queue, exchange, "never-bound")  # unbinding what is not bound is fine


# (binding key, routing key, matches)
TOPIC_CASES = [
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("*", "", False),  # the empty key has no words at all
    ("*", "a", True),
    ("*", "a.b", False),
    ("", "", True),
    ("", "a", False),
    ("a.*", "a", False),
    ("a.*", "a.b", True),
    ("a.*", "a.b.c", False),
    ("a.#", "a", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab", False),
    ("#.a", "a", True),
    ("#.a", "x.y.a", True),
    ("#.a", "x.a.y", False),
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y.c", False),
    ("#.#", "a.b", True),
    ("#.#", "", True),
    ("*.*", "a", False),
    ("*.*", "a.b", True),
    ("a.*.b", "a..b", True),
    ("a..b", "a..b", True),
    ("a..b", "a.x.b", False),
    ("*.#", "a", True),
    ("#.*", "a.b.c", True),
    ("*.b.#", "a.b", True),
    ("*.b.#", "b", False),
    ("a.#.#.b", "a.b", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b.c.d", True),
    ("A.b", "a.b", False),
    ("ä.*", "ä.ö", True),
]


@pytest.mark.parametrize("binding,key,matches", TOPIC_CASES)
def test_topic_matching(channel: Any, resources: Resources, binding: str, key: str, matches: bool) -> None:
    # A fresh exchange per case: on amq.topic a "#" binding would catch other tests' messages.
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "topic")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, binding)
    assert routed(channel, exchange, key, {"q": queue}) == ({"q"} if matches else set())


def test_topic_unbind_one_of_several(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "topic")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "a.#")
    channel.queue_bind(queue, exchange, "#.b")
    channel.queue_unbind(queue, exchange, "a.#")
    assert routed(channel, exchange, "a.c", {"q": queue}) == set()
    assert routed(channel, exchange, "a.b", {"q": queue}) == {"q"}


def _headers_queues(channel: Any, exchange: str) -> dict[str, str]:
    queues = {}
    for label, args in {
        "all": {"x-match": "all", "format": "pdf", "type": "report"},
        "any": {"x-match": "any", "format": "pdf", "type": "report"},
        "default": {"format": "pdf", "type": "report"},
        "empty_all": {"x-match": "all"},
        "empty_any": {"x-match": "any"},
    }.items():
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, "ignored", arguments=args)
        queues[label] = queue
    return queues


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({"format": "pdf", "type": "report"}, {"all", "any", "default", "empty_all"}),
        ({"format": "pdf", "type": "report", "extra": 1}, {"all", "any", "default", "empty_all"}),
        ({"format": "pdf"}, {"any", "empty_all"}),
        ({"type": "report"}, {"any", "empty_all"}),
        ({"format": "zip", "type": "log"}, {"empty_all"}),
        ({}, {"empty_all"}),
        (None, {"empty_all"}),
        ({"format": "PDF"}, {"empty_all"}),
    ],
)
def test_headers_match(
    channel: Any,
    resources: Resources,
    headers: dict[str, Any] | None,
    expected: set[str],
) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "headers")
    queues = _headers_queues(channel, exchange)
    props = {"headers": headers} if headers is not None else {}
    assert routed(channel, exchange, "", queues, **props) == expected


@pytest.mark.parametrize("exchange", ["amq.headers", "amq.match"])
def test_predeclared_headers_exchanges(channel: Any, exchange: str) -> None:
    # Shared by every test: a unique token in each binding keeps other tests' messages out.
    token = unique("token")
    all_q = channel.queue_declare("", exclusive=True).method.queue
    any_q = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(all_q, exchange, "", arguments={"x-match": "all", "token": token, "kind": "a"})
    channel.queue_bind(any_q, exchange, "", arguments={"x-match": "any", "token": token, "kind": "a"})
    queues = {"all": all_q, "any": any_q}
    assert routed(channel, exchange, "", queues, headers={"token": token, "kind": "a"}) == {"all", "any"}
    assert routed(channel, exchange, "", queues, headers={"token": token}) == {"any"}
    assert routed(channel, exchange, "", queues, headers={"token": "other"}) == set()


def test_headers_value_types(channel: Any, resources: Resources) -> None:
    """Matching compares typed values: an int binding matches an int header, not its string form."""
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "headers")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "", arguments={"x-match": "all", "n": 42, "flag": True})
    queues = {"q": queue}
    assert routed(channel, exchange, "", queues, headers={"n": 42, "flag": True}) == {"q"}
    assert routed(channel, exchange, "", queues, headers={"n": "42", "flag": True}) == set()
    assert routed(channel, exchange, "", queues, headers={"n": 43, "flag": True}) == set()


def test_headers_x_arguments_are_not_matched(channel: Any, resources: Resources) -> None:
    """Binding arguments starting with `x-` steer matching; they are not headers to match."""
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "headers")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "", arguments={"x-match": "any", "k": "v", "other": "w"})
    assert routed(channel, exchange, "", {"q": queue}, headers={"other": "w"}) == {"q"}
    assert routed(channel, exchange, "", {"q": queue}, headers={"x-match": "any"}) == set()


@pytest.mark.parametrize("value", ["bogus", "ALL"])
def test_headers_invalid_x_match_is_406(connection: pika.BlockingConnection, value: str) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    assert broker_error(
        lambda: ch.queue_bind(queue, "amq.headers", "", arguments={"x-match": value, "a": 1})
    ) == (
        406,
        f'PRECONDITION_FAILED - Invalid x-match field value <<"{value}">>; '
        "expected all, any, all-with-x, or any-with-x",
    )


def test_headers_x_match_with_x(channel: Any, resources: Resources) -> None:
    """`all-with-x` / `any-with-x` (RabbitMQ 3.10) also match `x-` headers, which plain all/any skip."""
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "headers")
    queues = {}
    for mode in ("any", "any-with-x", "all-with-x"):
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, "", arguments={"x-match": mode, "x-kind": "k", "n": 1})
        queues[mode] = queue
    assert routed(channel, exchange, "", queues, headers={"x-kind": "k"}) == {"any-with-x"}
    assert routed(channel, exchange, "", queues, headers={"x-kind": "k", "n": 1}) == {
        "any",
        "any-with-x",
        "all-with-x",
    }
    assert routed(channel, exchange, "", queues, headers={"n": 1}) == {"any", "any-with-x"}
