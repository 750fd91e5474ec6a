"""Bodies split across frames (1 MiB, 16 MiB, small frame_max) and the 128 MiB message size limit."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pika
import pytest
from pika import frame, spec

from tests.integration.conftest import BrokerInfo, get_message, wait_for

MAX_MESSAGE_SIZE = 128 * 1024 * 1024  # RabbitMQ's default max_message_size


def _round_trip(connection: pika.BlockingConnection, body: bytes) -> None:
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", queue, body, pika.BasicProperties(message_id="big"))
    # Consumed (basic.deliver) and fetched (basic.get-ok): both content paths split the body.
    got: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    wait_for(connection, lambda: len(got) == 1, timeout=20, what="the large delivery")
    assert len(got[0]) == len(body)
    assert hashlib.sha256(got[0]).digest() == hashlib.sha256(body).digest()
    ch.close()
    ch = connection.channel()
    ch.basic_publish("", queue, body)
    _, _, fetched = get_message(ch, queue, timeout=20, auto_ack=True)
    assert fetched == body


@pytest.mark.parametrize("size", [1024 * 1024, 16 * 1024 * 1024], ids=["1MiB", "16MiB"])
def test_large_body_round_trip(connection: pika.BlockingConnection, size: int) -> None:
    _round_trip(connection, os.urandom(size))


def test_body_exactly_filling_frames(connection: pika.BlockingConnection) -> None:
    frame_payload = connection._impl.params.frame_max - 8
    _round_trip(connection, os.urandom(frame_payload * 3))
    _round_trip(connection, os.urandom(frame_payload * 3 + 1))


def test_small_frame_max(broker: BrokerInfo) -> None:
    conn = pika.BlockingConnection(broker.params(frame_max=4096))
    try:
        assert conn._impl.params.frame_max == 4096
        _round_trip(conn, os.urandom(1024 * 1024))
    finally:
        conn.close()


def test_message_over_max_size_is_406(connection: pika.BlockingConnection) -> None:
    """A header announcing 128 MiB + 1 byte; the body is streamed from one reused chunk to keep memory flat.

    The broker may refuse at the header or once the body is in; sending stops as soon as the channel closes.
    """
    ch = connection.channel()
    queue = ch.queue_declare("", exclusive=True).method.queue
    reasons: list[Any] = []
    ch._impl.add_on_close_callback(lambda c, reason: reasons.append(reason))
    size = MAX_MESSAGE_SIZE + 1
    impl = connection._impl
    impl._send_method(ch.channel_number, spec.Basic.Publish(exchange="", routing_key=queue))
    impl._send_frame(frame.Header(ch.channel_number, size, spec.BasicProperties()))
    chunk = b"\0" * (impl.params.frame_max - 8)
    sent = frames = 0
    while sent < size and not reasons:
        part = chunk if size - sent >= len(chunk) else chunk[: size - sent]
        impl._send_frame(frame.Body(ch.channel_number, part))
        sent += len(part)
        frames += 1
        if frames % 32 == 0:
            connection.process_data_events(time_limit=0)  # flush, and notice an early close
    wait_for(connection, lambda: bool(reasons), timeout=30, what="channel.close")
    error = reasons[0]
    assert isinstance(error, pika.exceptions.ChannelClosedByBroker)
    assert (error.reply_code, error.reply_text) == (
        406,
        f"PRECONDITION_FAILED - message size {size} is larger than configured max size {MAX_MESSAGE_SIZE}",
    )
    assert connection.is_open
    assert connection.channel().basic_get(queue)[0] is None
