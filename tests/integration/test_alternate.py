"""Alternate exchanges: unroutable messages go there; mandatory returns only what nothing routes."""

from __future__ import annotations

import pika

from tests.integration.conftest import Resources, get_message, wait_for


def test_unroutable_messages_go_to_the_alternate(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    ch = connection.channel()
    alternate = resources.exchange()
    main = resources.exchange()
    caught = resources.queue()
    ch.exchange_declare(alternate, "fanout")
    ch.queue_declare(caught)
    ch.queue_bind(caught, alternate)
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(b))
    ch.basic_publish(main, "nobody-bound", b"m", mandatory=True)
    method, _, body = get_message(ch, caught, auto_ack=True)
    assert body == b"m"
    assert (method.exchange, method.routing_key) == (main, "nobody-bound")
    connection.process_data_events(time_limit=0.1)
    assert returned == []


def test_mandatory_returns_when_the_alternate_routes_nowhere(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    ch = connection.channel()
    alternate = resources.exchange()
    main = resources.exchange()
    ch.exchange_declare(alternate, "direct")
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(b))
    ch.basic_publish(main, "k", b"m", mandatory=True)
    wait_for(connection, lambda: returned == [b"m"], what="the basic.return")


def test_missing_alternate_exchange_is_like_none(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    ch = connection.channel()
    main = resources.exchange()
    ch.exchange_declare(main, "direct", arguments={"alternate-exchange": "no-such-exchange-here"})
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(b))
    ch.basic_publish(main, "k", b"m", mandatory=True)
    wait_for(connection, lambda: returned == [b"m"], what="the basic.return")
