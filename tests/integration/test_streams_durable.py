"""Streams on disk: what a confirm promised survives SIGKILL and a clean restart, at the same offsets."""

from __future__ import annotations

import os
from typing import Any

import pika
import pytest

from tests.integration.conftest import wait_for
from tests.integration.test_restart import Node, node  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="restarts need a broker process of our own"
)

STREAM = {"x-queue-type": "stream"}
SIZES = [0, 1, 1000, 131072, 2 << 20, 10, 0, 5 << 20]


def _body(i: int, size: int) -> bytes:
    return (b"%08d" % i * (size // 8 + 1))[:size]


def _read_all(connection: Any, queue: str, count: int) -> list[tuple[int, bytes]]:
    channel = connection.channel()
    channel.basic_qos(prefetch_count=4)
    got: list[tuple[int, bytes]] = []

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        got.append((props.headers["x-stream-offset"], body))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message, arguments={"x-stream-offset": "first"})
    wait_for(connection, lambda: len(got) >= count, timeout=20, what=f"{count} records")
    connection.process_data_events(time_limit=0.2)
    return got


@pytest.mark.parametrize("kill", [True, False])
def test_confirmed_records_survive_a_restart(node: Node, kill: bool) -> None:  # noqa: F811
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare("events", durable=True, arguments=STREAM)
    channel.confirm_delivery()
    expected = []
    for i, size in enumerate(SIZES * 3):
        body = _body(i, size)
        channel.basic_publish("", "events", body, pika.BasicProperties(headers={"i": i}))  # transient too
        expected.append((i, body))
    assert _read_all(connection, "events", len(expected)) == expected
    connection.close()
    node.restart(kill=kill)
    connection = node.connect()
    assert _read_all(connection, "events", len(expected)) == expected
    channel = connection.channel()
    assert channel.queue_declare("events", passive=True).method.message_count == len(expected)
    channel.confirm_delivery()
    channel.basic_publish("", "events", b"after")
    assert _read_all(connection, "events", len(expected) + 1)[-1] == (len(expected), b"after")
    # The stream's records are in a log of its own, not in the main one.
    assert any((node.data_dir / "streams").iterdir())
    connection.close()


def test_a_deleted_stream_stays_deleted(node: Node) -> None:  # noqa: F811
    connection = node.connect()
    channel = connection.channel()
    channel.queue_declare("gone", durable=True, arguments=STREAM)
    channel.confirm_delivery()
    channel.basic_publish("", "gone", b"old")
    channel.queue_delete("gone")
    channel.queue_declare("gone", durable=True, arguments=STREAM)
    channel.basic_publish("", "gone", b"new")
    connection.close()
    node.restart(kill=True)
    connection = node.connect()
    assert _read_all(connection, "gone", 1) == [(0, b"new")]
    connection.close()
