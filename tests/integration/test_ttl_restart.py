"""Message TTL across a restart, through the real process: deadlines are publish time + TTL, absolute.

Persistent messages with a per-queue x-message-ttl and with their own `expiration` are published, the
broker is stopped (SIGTERM: restored from the clean-stop snapshot) or killed (SIGKILL: replayed from the
log), and started again on the same data directory. A message whose deadline passed while the broker was
down is gone at once (dead-lettered with reason `expired` when its queue has a DLX); one whose deadline is
still ahead survives and expires at its original deadline, not a full TTL after the restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.test_restart import Node, running_node

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OTTERMQ_TEST_URL")), reason="restarts need a broker process of our own"
)

SHORT = 2000  # ms: due while the broker is down
LONG = 10000  # ms: still ahead at the restart and for the checks after it on a loaded machine


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    yield from running_node(tmp_path)


def counts(channel: Any, queues: list[str]) -> dict[str, int]:
    return {name: channel.queue_declare(name, passive=True).method.message_count for name in queues}


def declare(channel: Any) -> None:
    channel.queue_declare("dead", durable=True)
    channel.queue_declare(
        "short",
        durable=True,
        arguments={"x-message-ttl": SHORT, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"},
    )
    channel.queue_declare("long", durable=True, arguments={"x-message-ttl": LONG})
    channel.queue_declare("own-short", durable=True)
    channel.queue_declare("own-long", durable=True)


def publish(channel: Any, queue: str, expiration: int | None = None) -> None:
    props = pika.BasicProperties(delivery_mode=2, expiration=None if expiration is None else str(expiration))
    channel.basic_publish("", queue, queue.encode(), props)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_ttl_deadlines_survive_a_restart(node: Node, kill: bool) -> None:
    connection = node.connect()
    channel = connection.channel()
    channel.confirm_delivery()
    declare(channel)
    published = time.monotonic()
    publish(channel, "short")
    publish(channel, "long")
    publish(channel, "own-short", SHORT)
    publish(channel, "own-long", LONG)
    connection.close()

    if kill:
        node.kill()
    else:
        node.stop()
    time.sleep(max(0.0, published + SHORT / 1000 + 0.2 - time.monotonic()))
    node.start()
    restarted = time.monotonic()
    assert restarted < published + LONG / 1000, "the restart took too long for this test's timing"

    connection = node.connect()
    channel = connection.channel()
    watched = ["short", "long", "own-short", "own-long", "dead"]
    # Due while down: gone once the broker looks at them (the first sweep runs within a second).
    stop_at = time.monotonic() + 3
    while (now_counts := counts(channel, watched)) and now_counts["short"] + now_counts["own-short"]:
        assert time.monotonic() < stop_at, now_counts
        time.sleep(0.1)
    assert now_counts["long"] == 1 and now_counts["own-long"] == 1, now_counts
    method, properties, body = channel.basic_get("dead", auto_ack=True)
    assert method is not None and body == b"short"
    assert properties.headers["x-death"][0]["reason"] == "expired"

    # Still ahead at the restart: gone at the original deadline (plus the sweep's second), well before
    # restart + TTL.
    while (now_counts := counts(channel, ["long", "own-long"])) and any(now_counts.values()):
        assert time.monotonic() < published + LONG / 1000 + 1.5, now_counts
        time.sleep(0.1)
    gone = time.monotonic()
    assert gone >= published + LONG / 1000 - 0.1
    assert gone < restarted + LONG / 1000
    connection.close()
