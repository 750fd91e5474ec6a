"""Exchange-to-exchange bindings (exchange.bind / exchange.unbind): chains, filters, cycles, errors."""

from __future__ import annotations

from typing import Any

import pika

from tests.integration.conftest import Resources, broker_error, routed, unique


def _exchanges(channel: Any, resources: Resources, *kinds: str) -> list[str]:
    names = []
    for kind in kinds:
        name = resources.exchange()
        channel.exchange_declare(name, kind)
        names.append(name)
    return names


def test_chain_with_key_filter(channel: Any, resources: Resources) -> None:
    source, middle = _exchanges(channel, resources, "direct", "fanout")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=middle, source=source, routing_key="go")
    channel.queue_bind(queue, middle)
    assert routed(channel, source, "go", {"q": queue}) == {"q"}
    assert routed(channel, source, "stop", {"q": queue}) == set()


def test_topic_to_topic_keeps_routing_key(channel: Any, resources: Resources) -> None:
    source, dest = _exchanges(channel, resources, "topic", "topic")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=dest, source=source, routing_key="a.#")
    channel.queue_bind(queue, dest, "*.b")
    assert routed(channel, source, "a.b", {"q": queue}) == {"q"}
    assert routed(channel, source, "a.c", {"q": queue}) == set()
    assert routed(channel, source, "x.b", {"q": queue}) == set()
    method, _, _ = channel.basic_get(queue, auto_ack=True)
    assert method is None


def test_routing_key_seen_by_queue_is_the_published_one(channel: Any, resources: Resources) -> None:
    source, dest = _exchanges(channel, resources, "fanout", "direct")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=dest, source=source)
    channel.queue_bind(queue, dest, "orig")
    channel.basic_publish(source, "orig", b"x")
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert (method.exchange, method.routing_key, body) == (source, "orig", b"x")


def test_cycle_delivers_once(channel: Any, resources: Resources) -> None:
    a, b = _exchanges(channel, resources, "fanout", "fanout")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=b, source=a)
    channel.exchange_bind(destination=a, source=b)
    channel.queue_bind(queue, b)
    assert routed(channel, a, "", {"q": queue}) == {"q"}
    assert routed(channel, b, "", {"q": queue}) == {"q"}


def test_self_binding_delivers_once(channel: Any, resources: Resources) -> None:
    (a,) = _exchanges(channel, resources, "fanout")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=a, source=a)
    channel.queue_bind(queue, a)
    assert routed(channel, a, "", {"q": queue}) == {"q"}


def test_diamond_delivers_once(channel: Any, resources: Resources) -> None:
    top, left, right = _exchanges(channel, resources, "fanout", "fanout", "fanout")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=left, source=top)
    channel.exchange_bind(destination=right, source=top)
    channel.queue_bind(queue, left)
    channel.queue_bind(queue, right)
    assert routed(channel, top, "", {"q": queue}) == {"q"}


def test_unbind(channel: Any, resources: Resources) -> None:
    source, dest = _exchanges(channel, resources, "fanout", "fanout")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=dest, source=source)
    channel.queue_bind(queue, dest)
    channel.exchange_unbind(destination=dest, source=source)
    assert routed(channel, source, "", {"q": queue}) == set()
    assert routed(channel, dest, "", {"q": queue}) == {"q"}


def test_internal_destination(channel: Any, resources: Resources) -> None:
    (source,) = _exchanges(channel, resources, "fanout")
    internal = resources.exchange()
    channel.exchange_declare(internal, "fanout", internal=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.exchange_bind(destination=internal, source=source)
    channel.queue_bind(queue, internal)
    assert routed(channel, source, "", {"q": queue}) == {"q"}


def test_bind_missing_source_is_404(connection: pika.BlockingConnection, resources: Resources) -> None:
    ch = connection.channel()
    (dest,) = _exchanges(ch, resources, "fanout")
    missing = unique("x")
    assert broker_error(lambda: ch.exchange_bind(destination=dest, source=missing)) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )


def test_bind_missing_destination_is_404(connection: pika.BlockingConnection, resources: Resources) -> None:
    ch = connection.channel()
    (source,) = _exchanges(ch, resources, "fanout")
    missing = unique("x")
    assert broker_error(lambda: ch.exchange_bind(destination=missing, source=source)) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )


def test_deleting_destination_removes_binding(channel: Any, resources: Resources) -> None:
    source, dest = _exchanges(channel, resources, "fanout", "fanout")
    channel.exchange_bind(destination=dest, source=source)
    channel.exchange_delete(dest)
    # With its only binding gone, the source is unused again.
    channel.exchange_delete(source, if_unused=True)


def test_source_with_exchange_binding_is_in_use(
    connection: pika.BlockingConnection,
    resources: Resources,
) -> None:
    ch = connection.channel()
    source, dest = _exchanges(ch, resources, "fanout", "fanout")
    ch.exchange_bind(destination=dest, source=source)
    assert broker_error(lambda: ch.exchange_delete(source, if_unused=True)) == (
        406,
        f"PRECONDITION_FAILED - exchange '{source}' in vhost '/' in use",
    )


def test_unbind_missing_is_ok(channel: Any) -> None:
    channel.exchange_unbind(destination=unique("x"), source=unique("x"))
    assert channel.is_open
