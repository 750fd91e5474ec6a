"""exchange.declare and exchange.delete: flags, equivalence, reserved names, the pre-declared exchanges.

Reply codes and texts are RabbitMQ's, as observed on RabbitMQ 3.10.
"""

from __future__ import annotations

from typing import Any

import pika
import pytest

from tests.integration.conftest import Resources, broker_error, unique

PREDECLARED = [
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
]


@pytest.mark.parametrize("kind", ["direct", "fanout", "topic", "headers"])
def test_declare_each_type_and_redeclare(channel: Any, resources: Resources, kind: str) -> None:
    name = resources.exchange()
    channel.exchange_declare(name, kind)
    channel.exchange_declare(name, kind)  # equivalent re-declaration is fine
    channel.exchange_declare(name, kind, passive=True)


def test_declare_unknown_type_is_connection_error(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    name = unique("x")
    code, text = broker_error(
        lambda: ch.exchange_declare(name, "no-such-type"),
        pika.exceptions.ConnectionClosedByBroker,
    )
    assert (code, text) == (503, "COMMAND_INVALID - unknown exchange type 'no-such-type'")


def test_declare_empty_type_is_connection_error(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    name = unique("x")
    code, text = broker_error(lambda: ch.exchange_declare(name, ""), pika.exceptions.ConnectionClosedByBroker)
    assert (code, text) == (503, "COMMAND_INVALID - invalid exchange type ''")


def test_amq_default_is_not_a_name(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(lambda: ch.exchange_declare("amq.default", passive=True)) == (
        404,
        "NOT_FOUND - no exchange 'amq.default' in vhost '/'",
    )


def test_passive_declare_missing_is_404(connection: pika.BlockingConnection, channel: Any) -> None:
    name = unique("x")
    assert broker_error(lambda: channel.exchange_declare(name, passive=True)) == (
        404,
        f"NOT_FOUND - no exchange '{name}' in vhost '/'",
    )
    assert connection.is_open


@pytest.mark.parametrize("name,kind", PREDECLARED)
def test_predeclared_exchanges_exist(channel: Any, name: str, kind: str) -> None:
    channel.exchange_declare(name, kind, passive=True)
    # Re-declaring them with their own type and flags is allowed, too.
    channel.exchange_declare(name, kind, durable=True)


def test_declare_default_exchange_is_403(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(lambda: ch.exchange_declare("", passive=True)) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )


def test_inequivalent_type_is_406(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(name, "direct")
    assert broker_error(lambda: ch.exchange_declare(name, "fanout")) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{name}' in vhost '/': "
        "received 'fanout' but current is 'direct'",
    )


def test_inequivalent_durable_is_406(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(name, "direct")
    assert broker_error(lambda: ch.exchange_declare(name, "direct", durable=True)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{name}' in vhost '/': "
        "received 'true' but current is 'false'",
    )


def test_inequivalent_auto_delete_is_406(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(name, "direct", auto_delete=True)
    assert broker_error(lambda: ch.exchange_declare(name, "direct", auto_delete=False)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange '{name}' in vhost '/': "
        "received 'false' but current is 'true'",
    )


def test_inequivalent_internal_is_406(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(name, "direct")
    assert broker_error(lambda: ch.exchange_declare(name, "direct", internal=True)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '{name}' in vhost '/': "
        "received 'true' but current is 'false'",
    )


def test_passive_ignores_type_and_flags(channel: Any, resources: Resources) -> None:
    name = resources.exchange()
    channel.exchange_declare(name, "topic")
    channel.exchange_declare(name, "fanout", passive=True, durable=True)


def test_amq_prefix_is_reserved(connection: pika.BlockingConnection) -> None:
    name = "amq." + unique("x")
    ch = connection.channel()
    assert broker_error(lambda: ch.exchange_declare(name, "fanout")) == (
        403,
        f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'",
    )
    assert connection.is_open


def test_predeclared_with_other_type_is_inequivalent(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(lambda: ch.exchange_declare("amq.direct", "fanout")) == (
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in vhost '/': "
        "received 'fanout' but current is 'direct'",
    )


def test_delete_predeclared_is_403(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(lambda: ch.exchange_delete("amq.direct")) == (
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
    )


def test_delete_default_exchange_is_403(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(lambda: ch.exchange_delete("")) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )


def test_delete_missing_is_ok(channel: Any) -> None:
    channel.exchange_delete(unique("x"))


def test_delete(channel: Any, resources: Resources) -> None:
    name = resources.exchange()
    channel.exchange_declare(name, "direct")
    channel.exchange_delete(name)
    code, _ = broker_error(lambda: channel.exchange_declare(name, passive=True))
    assert code == 404


def test_delete_if_unused(connection: pika.BlockingConnection, resources: Resources) -> None:
    name = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(name, "direct")
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(queue, name, "k")
    assert broker_error(lambda: ch.exchange_delete(name, if_unused=True)) == (
        406,
        f"PRECONDITION_FAILED - exchange '{name}' in vhost '/' in use",
    )
    ch = connection.channel()
    ch.exchange_declare(name, passive=True)  # still there
    ch.exchange_delete(name, if_unused=False)  # without the flag it goes, bindings and all
    assert broker_error(lambda: ch.exchange_declare(name, passive=True))[0] == 404


def test_delete_if_unused_after_unbind(channel: Any, resources: Resources) -> None:
    name = resources.exchange()
    channel.exchange_declare(name, "direct")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, name, "k")
    channel.queue_unbind(queue, name, "k")
    channel.exchange_delete(name, if_unused=True)


def test_auto_delete_exchange_goes_with_last_binding(channel: Any, resources: Resources) -> None:
    name = resources.exchange()
    channel.exchange_declare(name, "fanout", auto_delete=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, name)
    channel.exchange_declare(name, passive=True)
    channel.queue_unbind(queue, name)
    code, _ = broker_error(lambda: channel.exchange_declare(name, passive=True))
    assert code == 404


def test_publish_to_internal_exchange_is_403(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    name = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(name, "fanout", internal=True)

    def publish() -> None:
        ch.basic_publish(name, "", b"x")
        ch.queue_declare("", exclusive=True)  # a round trip: the close arrives here

    assert broker_error(publish) == (
        403,
        f"ACCESS_REFUSED - cannot publish to internal exchange '{name}' in vhost '/'",
    )
    assert connection.is_open


def test_publish_to_missing_exchange_is_404(connection: pika.BlockingConnection) -> None:
    name = unique("x")
    ch = connection.channel()

    def publish() -> None:
        ch.basic_publish(name, "", b"x")
        ch.queue_declare("", exclusive=True)

    assert broker_error(publish) == (404, f"NOT_FOUND - no exchange '{name}' in vhost '/'")


def test_declare_with_arguments_and_inequivalent_arguments(
    connection: pika.BlockingConnection,
    resources: Resources,
) -> None:
    name = resources.exchange()
    alt = resources.exchange()
    ch = connection.channel()
    ch.exchange_declare(alt, "fanout")
    ch.exchange_declare(name, "direct", arguments={"alternate-exchange": alt})
    ch.exchange_declare(name, "direct", arguments={"alternate-exchange": alt})
    code, text = broker_error(
        lambda: ch.exchange_declare(name, "direct", arguments={"alternate-exchange": "other"})
    )
    assert code == 406
    assert text.startswith(
        f"PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{name}'"
    )


def test_delete_removes_bindings(channel: Any, resources: Resources) -> None:
    name = resources.exchange()
    channel.exchange_declare(name, "fanout")
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, name)
    channel.exchange_delete(name)
    channel.exchange_declare(name, "fanout")
    channel.basic_publish(name, "", b"x")
    assert channel.basic_get(queue, auto_ack=True)[0] is None
