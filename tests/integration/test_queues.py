"""queue.declare / bind / unbind / purge / delete: counts, server names, exclusivity, auto-delete, errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pika
import pytest

from tests.integration.conftest import (
    BrokerInfo,
    Resources,
    broker_error,
    drain,
    queue_counts,
    unique,
    wait_for,
    wait_queue_gone,
)


def _locked(name: str) -> tuple[int, str]:
    return (
        405,
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost '/'. "
        "It could be originally declared on another connection or the exclusive property value does not "
        "match that of the original declaration.",
    )


def test_declare_ok_counts(connection: pika.BlockingConnection, resources: Resources) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ok = ch.queue_declare(queue).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (queue, 0, 0)
    for i in range(3):
        ch.basic_publish("", queue, str(i).encode())
    assert queue_counts(ch, queue, (3, 0)) == (3, 0)

    # A consumer holding one unacked message: counts show ready messages and consumers.
    consumer_ch = connection.channel()
    consumer_ch.basic_qos(prefetch_count=1)
    held: list[int] = []
    consumer_ch.basic_consume(queue, lambda c, m, p, b: held.append(m.delivery_tag))
    wait_for(connection, lambda: len(held) == 1, what="one delivery")
    assert queue_counts(ch, queue, (2, 1)) == (2, 1)
    ok = ch.queue_declare(queue).method  # a non-passive re-declaration reports the same
    assert (ok.queue, ok.message_count, ok.consumer_count) == (queue, 2, 1)


def test_server_named_queues(channel: Any) -> None:
    names = {channel.queue_declare("", exclusive=True).method.queue for _ in range(5)}
    assert len(names) == 5
    for name in names:
        assert name.startswith("amq.gen-")
        assert len(name) > len("amq.gen-") + 10
    # The default exchange routes to them by name.
    name = next(iter(names))
    channel.basic_publish("", name, b"x")
    _, _, body = channel.basic_get(name, auto_ack=True)
    assert body == b"x"


def test_passive_missing_is_404(connection: pika.BlockingConnection, channel: Any) -> None:
    name = unique("q")
    assert broker_error(lambda: channel.queue_declare(name, passive=True)) == (
        404,
        f"NOT_FOUND - no queue '{name}' in vhost '/'",
    )
    assert connection.is_open


def test_amq_prefix_is_reserved(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    name = "amq." + unique("q")
    assert broker_error(lambda: ch.queue_declare(name)) == (
        403,
        f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
    )


@pytest.mark.parametrize(
    "first,second,arg",
    [
        ({"durable": False}, {"durable": True}, "durable"),
        ({"auto_delete": True}, {"auto_delete": False}, "auto_delete"),
    ],
)
def test_inequivalent_is_406(
    connection: pika.BlockingConnection,
    resources: Resources,
    first: dict[str, bool],
    second: dict[str, bool],
    arg: str,
) -> None:
    name = resources.queue()
    ch = connection.channel()
    ch.queue_declare(name, **first)
    received, current = ("true", "false") if second[arg] else ("false", "true")
    assert broker_error(lambda: ch.queue_declare(name, **second)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{name}' in vhost '/': "
        f"received '{received}' but current is '{current}'",
    )


def test_inequivalent_arguments_is_406(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.queue()
    ch = connection.channel()
    ch.queue_declare(name, arguments={"x-max-length": 10})
    assert broker_error(lambda: ch.queue_declare(name, arguments={"x-max-length": 20})) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{name}' in vhost '/': "
        "received '20' but current is '10'",
    )


def test_exclusive_locked_from_other_connection(
    broker: BrokerInfo, connection: pika.BlockingConnection
) -> None:
    ch = connection.channel()
    name = unique("excl")
    ch.queue_declare(name, exclusive=True)
    ch.basic_publish("", name, b"x")
    # The owner may use it from any of its channels.
    connection.channel().queue_declare(name, exclusive=True)
    connection.channel().queue_declare(name, passive=True)

    other = pika.BlockingConnection(broker.params())
    try:
        actions: dict[str, Callable[[Any], object]] = {
            "declare": lambda c: c.queue_declare(name, exclusive=True),
            "declare_non_exclusive": lambda c: c.queue_declare(name),
            "passive": lambda c: c.queue_declare(name, passive=True),
            "get": lambda c: c.basic_get(name),
            "consume": lambda c: c.basic_consume(name, lambda *a: None),
            "purge": lambda c: c.queue_purge(name),
            "delete": lambda c: c.queue_delete(name),
            "bind": lambda c: c.queue_bind(name, "amq.fanout"),
        }
        for label, action in actions.items():
            oc = other.channel()
            assert broker_error(functools.partial(action, oc)) == _locked(name), label
        assert other.is_open
    finally:
        other.close()
    # Still there and intact for its owner.
    assert queue_counts(ch, name, (1, 0)) == (1, 0)


def test_exclusive_removed_when_connection_closes(
    broker: BrokerInfo, connection: pika.BlockingConnection
) -> None:
    owner = pika.BlockingConnection(broker.params())
    name = unique("excl")
    owner.channel().queue_declare(name, exclusive=True)
    owner.close()
    assert wait_queue_gone(connection, name) == (404, f"NOT_FOUND - no queue '{name}' in vhost '/'")


def test_exclusive_survives_channel_close(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    name = unique("excl")
    ch.queue_declare(name, exclusive=True)
    ch.close()
    connection.channel().queue_declare(name, passive=True)


def test_auto_delete_after_last_consumer(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.queue()
    ch = connection.channel()
    ch.queue_declare(name, auto_delete=True)
    # Never consumed: stays.
    ch.queue_declare(name, passive=True)
    tag1 = ch.basic_consume(name, lambda *a: None)
    tag2 = ch.basic_consume(name, lambda *a: None)
    ch.basic_cancel(tag1)
    assert ch.queue_declare(name, passive=True).method.consumer_count == 1
    ch.basic_cancel(tag2)
    assert wait_queue_gone(connection, name)[0] == 404


def test_auto_delete_when_consumer_channel_closes(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    name = resources.queue()
    ch = connection.channel()
    ch.queue_declare(name, auto_delete=True)
    ch.basic_consume(name, lambda *a: None)
    ch.close()
    assert wait_queue_gone(connection, name)[0] == 404


def test_purge(channel: Any, resources: Resources) -> None:
    name = resources.queue()
    channel.queue_declare(name)
    for i in range(4):
        channel.basic_publish("", name, str(i).encode())
    assert channel.queue_purge(name).method.message_count == 4
    assert channel.queue_purge(name).method.message_count == 0
    assert channel.basic_get(name)[0] is None


def test_purge_leaves_unacked(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.queue()
    ch = connection.channel()
    ch.queue_declare(name)
    for i in range(3):
        ch.basic_publish("", name, str(i).encode())
    method, _, _ = ch.basic_get(name)
    assert ch.queue_purge(name).method.message_count == 2
    ch.basic_reject(method.delivery_tag, requeue=True)
    assert queue_counts(ch, name, (1, 0)) == (1, 0)


def test_purge_missing_is_404(connection: pika.BlockingConnection) -> None:
    name = unique("q")
    ch = connection.channel()
    assert broker_error(lambda: ch.queue_purge(name)) == (404, f"NOT_FOUND - no queue '{name}' in vhost '/'")


def test_delete_returns_count(channel: Any, resources: Resources) -> None:
    name = resources.queue()
    channel.queue_declare(name)
    for i in range(3):
        channel.basic_publish("", name, str(i).encode())
    assert channel.queue_delete(name).method.message_count == 3
    assert broker_error(lambda: channel.queue_declare(name, passive=True))[0] == 404


def test_delete_missing_is_ok(channel: Any) -> None:
    assert channel.queue_delete(unique("q")).method.message_count == 0


def test_delete_if_unused(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.queue()
    ch = connection.channel()
    ch.queue_declare(name)
    tag = ch.basic_consume(name, lambda *a: None)
    assert broker_error(lambda: ch.queue_delete(name, if_unused=True)) == (
        406,
        f"PRECONDITION_FAILED - queue '{name}' in vhost '/' in use",
    )
    ch = connection.channel()
    ch.queue_declare(name, passive=True)
    ch.queue_delete(name, if_unused=True)
    del tag


def test_delete_if_empty(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.queue()
    ch = connection.channel()
    ch.queue_declare(name)
    ch.basic_publish("", name, b"x")
    assert broker_error(lambda: ch.queue_delete(name, if_empty=True)) == (
        406,
        f"PRECONDITION_FAILED - queue '{name}' in vhost '/' not empty",
    )
    ch = connection.channel()
    ch.queue_purge(name)
    ch.queue_delete(name, if_empty=True)


def test_bind_missing_queue_or_exchange_is_404(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    missing_q, missing_x = unique("q"), unique("x")
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    assert broker_error(lambda: ch.queue_bind(queue, missing_x, "k")) == (
        404,
        f"NOT_FOUND - no exchange '{missing_x}' in vhost '/'",
    )
    ch = connection.channel()
    assert broker_error(lambda: ch.queue_bind(missing_q, "amq.direct", "k")) == (
        404,
        f"NOT_FOUND - no queue '{missing_q}' in vhost '/'",
    )


def test_bind_is_idempotent(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "direct")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, "k")
    channel.queue_bind(queue, exchange, "k")
    channel.basic_publish(exchange, "k", b"once")
    assert drain(channel, queue) == [b"once"]


def test_delete_removes_bindings(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    queue = resources.queue()
    channel.exchange_declare(exchange, "fanout")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange)
    channel.queue_delete(queue)
    channel.queue_declare(queue)
    channel.basic_publish(exchange, "", b"x")
    assert drain(channel, queue) == []
    # The exchange has no bindings left, so it is unused.
    channel.exchange_delete(exchange, if_unused=True)


def test_deleting_last_bound_queue_auto_deletes_exchange(channel: Any, resources: Resources) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange)
    channel.queue_delete(queue)
    assert broker_error(lambda: channel.exchange_declare(exchange, passive=True))[0] == 404


def test_exclusive_queue_bindings_go_with_connection(
    broker: BrokerInfo,
    channel: Any,
    resources: Resources,
) -> None:
    exchange = resources.exchange()
    channel.exchange_declare(exchange, "fanout")
    owner = pika.BlockingConnection(broker.params())
    och = owner.channel()
    och.queue_bind(och.queue_declare("", exclusive=True).method.queue, exchange)
    owner.close()
    channel.exchange_delete(exchange, if_unused=True)


def test_exclusive_flag_mismatch_is_405(connection: pika.BlockingConnection, resources: Resources) -> None:
    exclusive = unique("excl")
    ch = connection.channel()
    ch.queue_declare(exclusive, exclusive=True)
    assert broker_error(lambda: ch.queue_declare(exclusive)) == _locked(exclusive)
    shared = resources.queue()
    ch = connection.channel()
    ch.queue_declare(shared)
    assert broker_error(lambda: ch.queue_declare(shared, exclusive=True)) == _locked(shared)


def test_unbind_missing_queue_or_exchange_is_ok(channel: Any) -> None:
    channel.queue_unbind(unique("q"), "amq.direct", "k")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_unbind(queue, unique("x"), "k")
    assert channel.is_open
