"""Queue argument validation and equivalence, worded as RabbitMQ words them."""

from __future__ import annotations

from typing import Any

import pika
import pytest

from tests.integration.conftest import Resources, broker_error, unique


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"x-message-ttl": "x"}, "'x-message-ttl' for {q}: \"expected integer, got longstr\""),
        ({"x-message-ttl": -1}, "'x-message-ttl' for {q}: {value_negative,-1}"),
        ({"x-expires": "x"}, "'x-expires' for {q}: \"expected integer, got longstr\""),
        ({"x-expires": 0}, "'x-expires' for {q}: {value_zero,0}"),
        ({"x-max-length": "x"}, "'x-max-length' for {q}: \"expected integer, got longstr\""),
        ({"x-max-length": -1}, "'x-max-length' for {q}: {value_negative,-1}"),
        ({"x-max-length-bytes": "x"}, "'x-max-length-bytes' for {q}: \"expected integer, got longstr\""),
        ({"x-max-priority": True}, "'x-max-priority' for {q}: \"expected integer, got bool\""),
        ({"x-overflow": "nope"}, "'x-overflow' for {q}: invalid_overflow"),
        ({"x-overflow": 5}, "'x-overflow' for {q}: {unacceptable_type,signedint}"),
        ({"x-queue-mode": "nope"}, "'x-queue-mode' for {q}: \"unsupported queue mode 'nope'\""),
        (
            {"x-dead-letter-routing-key": "k"},
            "'x-dead-letter-routing-key' for {q}: routing_key_but_no_dlx_defined",
        ),
        (
            {"x-dead-letter-exchange": "d", "x-dead-letter-routing-key": 5},
            "'x-dead-letter-routing-key' for {q}: {unacceptable_type,signedint}",
        ),
        (
            {"x-single-active-consumer": 1},
            "'x-single-active-consumer' for {q}: {unacceptable_type,signedint}",
        ),
    ],
)
def test_invalid_queue_arguments(channel: Any, arguments: dict[str, Any], reason: str) -> None:
    name = unique("args")
    code, text = broker_error(lambda: channel.queue_declare(name, arguments=arguments))
    assert (code, text) == (
        406,
        "PRECONDITION_FAILED - invalid arg " + reason.replace("{q}", f"queue '{name}' in vhost '/'"),
    )


def test_dead_letter_exchange_of_the_wrong_type(channel: Any) -> None:
    name = unique("args")
    assert broker_error(lambda: channel.queue_declare(name, arguments={"x-dead-letter-exchange": 5})) == (
        406,
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{name}' "
        "in vhost '/'",
    )


@pytest.mark.parametrize(
    ("first", "second", "detail"),
    [
        (
            {"x-message-ttl": 100},
            {"x-message-ttl": 200},
            "'x-message-ttl' for {q}: received '200' but current is '100'",
        ),
        (
            {"x-max-length": 1},
            {},
            "'x-max-length' for {q}: received none but current is the value '1' of type 'signedint'",
        ),
        (
            {},
            {"x-max-priority": 5},
            "'x-max-priority' for {q}: received the value '5' of type 'signedint' but current is none",
        ),
    ],
)
def test_redeclare_with_different_arguments(
    connection: pika.BlockingConnection,
    resources: Resources,
    first: dict[str, Any],
    second: dict[str, Any],
    detail: str,
) -> None:
    name = resources.queue()
    connection.channel().queue_declare(name, arguments=first)
    ch = connection.channel()
    assert broker_error(lambda: ch.queue_declare(name, arguments=second)) == (
        406,
        "PRECONDITION_FAILED - inequivalent arg " + detail.replace("{q}", f"queue '{name}' in vhost '/'"),
    )


def test_same_arguments_redeclare_fine(channel: Any, resources: Resources) -> None:
    name = resources.queue()
    arguments = {"x-message-ttl": 100, "x-max-length": 3, "x-overflow": "reject-publish"}
    channel.queue_declare(name, arguments=arguments)
    assert channel.queue_declare(name, arguments=arguments).method.queue == name
