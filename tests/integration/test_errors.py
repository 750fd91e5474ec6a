"""Errors as RabbitMQ sends them: channel errors close only the channel, connection errors the connection.

Connection errors that a client never provokes on its own are sent through pika's connection implementation
(`_send_method` / `_send_frame`); raw-socket cases (bad protocol header, oversized frames) live elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika
import pytest
from pika import frame, spec

from tests.integration.conftest import BrokerInfo, broker_error, drain, unique, wait_for


def _passive_queue(ch: Any) -> None:
    ch.queue_declare(unique("q"), passive=True)


def _passive_exchange(ch: Any) -> None:
    ch.exchange_declare(unique("x"), passive=True)


def _reserved_queue(ch: Any) -> None:
    ch.queue_declare("amq." + unique("q"))


def _inequivalent(ch: Any) -> None:
    ch.exchange_declare("amq.fanout", "direct")


def _unknown_tag(ch: Any) -> None:
    ch.basic_ack(1234)
    ch.queue_declare("", exclusive=True)


def _not_transactional(ch: Any) -> None:
    ch.tx_commit()


CHANNEL_ERRORS: dict[str, tuple[Callable[[Any], None], int]] = {
    "passive-queue-404": (_passive_queue, 404),
    "passive-exchange-404": (_passive_exchange, 404),
    "reserved-name-403": (_reserved_queue, 403),
    "inequivalent-406": (_inequivalent, 406),
    "unknown-tag-406": (_unknown_tag, 406),
    "not-transactional-406": (_not_transactional, 406),
}


@pytest.mark.parametrize("name", list(CHANNEL_ERRORS))
def test_channel_error_leaves_connection_usable(connection: pika.BlockingConnection, name: str) -> None:
    provoke, code = CHANNEL_ERRORS[name]
    queue = connection.channel().queue_declare("", exclusive=True).method.queue
    ch = connection.channel()
    number = ch.channel_number
    assert broker_error(lambda: provoke(ch))[0] == code
    assert connection.is_open
    assert ch.is_closed
    # New channels work (pika hands out the freed number again) and other channels were untouched.
    fresh = connection.channel()
    assert fresh.channel_number == number
    fresh.basic_publish("", queue, b"still here")
    assert drain(fresh, queue) == [b"still here"]


def test_exclusive_queue_locked_is_channel_error(
    broker: BrokerInfo, connection: pika.BlockingConnection
) -> None:
    queue = connection.channel().queue_declare("", exclusive=True).method.queue
    other = pika.BlockingConnection(broker.params())
    try:
        ch = other.channel()
        assert broker_error(lambda: ch.queue_declare(queue, passive=True))[0] == 405
        assert other.is_open
        other.channel().queue_declare("", exclusive=True)
    finally:
        other.close()


def test_unknown_vhost_is_530(broker: BrokerInfo) -> None:
    params = broker.params(virtual_host="no-such-vhost")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
        pika.BlockingConnection(params)
    assert "(530) 'NOT_ALLOWED - vhost no-such-vhost not found'" in str(caught.value)


def test_bad_credentials_are_403(broker: BrokerInfo) -> None:
    params = broker.params(credentials=pika.PlainCredentials("guest", "wrong-password"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        pika.BlockingConnection(params)
    assert (
        "(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile.'"
    ) in str(caught.value)


def _connection_error(connection: pika.BlockingConnection, send: Callable[[], None]) -> tuple[int, str]:
    def run() -> None:
        send()
        wait_for(connection, lambda: False, timeout=5, what="connection.close")

    return broker_error(run, pika.exceptions.ConnectionClosedByBroker)


def test_second_channel_open_is_504(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    code_text = _connection_error(
        connection, lambda: connection._impl._send_method(ch.channel_number, spec.Channel.Open())
    )
    assert code_text == (504, "CHANNEL_ERROR - second 'channel.open' seen")


def test_method_on_unopened_channel_is_504(connection: pika.BlockingConnection) -> None:
    send = lambda: connection._impl._send_method(7, spec.Queue.Declare(queue="", exclusive=True))  # noqa: E731
    assert _connection_error(connection, send) == (504, "CHANNEL_ERROR - expected 'channel.open'")


@pytest.mark.parametrize(
    "make_frame",
    [
        lambda n: frame.Header(n, 0, spec.BasicProperties()),
        lambda n: frame.Body(n, b"stray"),
    ],
    ids=["header", "body"],
)
def test_content_without_method_is_505(connection: pika.BlockingConnection, make_frame: Any) -> None:
    ch = connection.channel()
    send = lambda: connection._impl._send_frame(make_frame(ch.channel_number))  # noqa: E731
    assert _connection_error(connection, send) == (
        505,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead",
    )


def test_prefetch_size_is_540(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(lambda: ch.basic_qos(prefetch_size=10), pika.exceptions.ConnectionClosedByBroker) == (
        540,
        "NOT_IMPLEMENTED - prefetch_size!=0 (10)",
    )


def test_recover_without_requeue_is_540(connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert broker_error(
        lambda: ch.basic_recover(requeue=False), pika.exceptions.ConnectionClosedByBroker
    ) == (
        540,
        "NOT_IMPLEMENTED - requeue=false",
    )


def test_connection_error_does_not_hurt_other_connections(
    broker: BrokerInfo,
    connection: pika.BlockingConnection,
) -> None:
    bystander = connection.channel()
    queue = bystander.queue_declare("", exclusive=True).method.queue
    victim = pika.BlockingConnection(broker.params())
    try:
        vch = victim.channel()
        assert (
            _connection_error(
                victim, lambda: victim._impl._send_method(vch.channel_number, spec.Channel.Open())
            )[0]
            == 504
        )
    finally:
        if victim.is_open:
            victim.close()
    bystander.basic_publish("", queue, b"fine")
    assert drain(bystander, queue) == [b"fine"]


def test_client_close_is_answered(broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(broker.params())
    conn.channel()
    conn.close()
    assert conn.is_closed
