"""Length limits: x-max-length, x-max-length-bytes and the x-overflow modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pika
import pytest

from memento.log import Log
from ottermq.store.codec import PUBLISH_TYPES
from tests.integration.conftest import Resources, drain, get_message, queue_counts, wait_for
from tests.integration.test_restart import Node


def test_drop_head_keeps_the_newest(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 2})
    for i in range(5):
        channel.basic_publish("", queue, str(i).encode())
    assert queue_counts(channel, queue, (2, 0)) == (2, 0)
    assert drain(channel, queue) == [b"3", b"4"]


def test_max_length_bytes_counts_bodies(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc"):
        channel.basic_publish("", queue, body)
    assert queue_counts(channel, queue, (2, 0)) == (2, 0)
    assert drain(channel, queue) == [b"bbbb", b"cccc"]


def test_unacked_messages_do_not_count(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 1})
    channel.basic_publish("", queue, b"held")
    held, _, _ = get_message(channel, queue)
    channel.basic_publish("", queue, b"ready")
    assert queue_counts(channel, queue, (1, 0)) == (1, 0)
    channel.basic_ack(held.delivery_tag)
    assert drain(channel, queue) == [b"ready"]


def test_max_length_zero_drops_unless_a_consumer_takes_it(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue, arguments={"x-max-length": 0})
    ch.basic_publish("", queue, b"nobody")
    assert queue_counts(ch, queue, (0, 0)) == (0, 0)
    got: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", queue, b"taken")
    wait_for(connection, lambda: got == [b"taken"], what="the delivery")


def test_reject_publish_nacks_confirmed_publishes(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    returned: list[bytes] = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append(b))
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"fits", mandatory=True)
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", queue, b"refused", mandatory=True)
    connection.process_data_events(time_limit=0.1)
    assert returned == []
    assert drain(ch, queue) == [b"fits"]
    ch.basic_publish("", queue, b"room again")
    assert drain(ch, queue) == [b"room again"]


def test_reject_publish_without_confirms_drops_silently(channel: Any, resources: Resources) -> None:
    queue = resources.queue()
    channel.queue_declare(queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for body in (b"first", b"second"):
        channel.basic_publish("", queue, body)
    assert drain(channel, queue) == [b"first"]


def test_reject_publish_dlx_dead_letters_the_refused(channel: Any, resources: Resources) -> None:
    dlx = resources.exchange()
    dead = resources.queue()
    queue = resources.queue()
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx)
    channel.queue_declare(
        queue,
        arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx},
    )
    channel.basic_publish("", queue, b"kept")
    channel.basic_publish("", queue, b"refused")
    _, props, body = get_message(channel, dead, auto_ack=True)
    assert body == b"refused"
    assert props.headers["x-death"][0]["reason"] == "maxlen"
    assert drain(channel, queue) == [b"kept"]


def test_reject_publish_with_max_length_zero_refuses_even_with_a_consumer(
    connection: pika.BlockingConnection, resources: Resources
) -> None:
    queue = resources.queue()
    ch = connection.channel()
    ch.queue_declare(queue, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    got: list[bytes] = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", queue, b"m")
    connection.process_data_events(time_limit=0.1)
    assert got == []


def test_a_drop_not_logged_before_a_crash_is_made_again_at_the_restart(tmp_path: Path) -> None:
    """A publish that takes a queue over x-max-length is confirmed, then the head it pushes out is removed
    and that removal logged: a crash in between (here: the log cut after the last publish) brings the
    dropped message back, and the restart drops it again, before anything is served."""
    node = Node(tmp_path)
    node.start()
    try:
        conn = node.connect()
        channel = conn.channel()
        channel.queue_declare("maxlen.crash", durable=True, arguments={"x-max-length": 1})
        channel.confirm_delivery()
        for body in (b"m0", b"m1", b"m2"):
            channel.basic_publish("", "maxlen.crash", body, pika.BasicProperties(delivery_mode=2))
        assert queue_counts(channel, "maxlen.crash", (1, 0)) == (1, 0)
        conn.close()
        node.kill()
        log = Log.open(node.data_dir / "log")
        try:
            last_publish = max(r.lsn for r in log.replay(0) if r.type in PUBLISH_TYPES)
            log.truncate_after(last_publish)  # the removals after it never reached the disk
        finally:
            log.close()
        node.start()
        conn = node.connect()
        channel = conn.channel()
        assert queue_counts(channel, "maxlen.crash", (1, 0)) == (1, 0)
        assert drain(channel, "maxlen.crash") == [b"m2"]
        conn.close()
    finally:
        node.close()
