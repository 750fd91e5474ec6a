"""TTL: parsing the expiration property, deadlines, and expiry at the head of a queue."""

from __future__ import annotations

import pytest

from ottermq.amqp.errors import ChannelError
from ottermq.amqp.properties import BasicProperties, encode_properties
from ottermq.broker import ttl
from ottermq.broker.message import Message
from ottermq.broker.queue_expiry import tick_queues
from ottermq.broker.ttl import now_ms
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import FakeConsumer, offer


def _message(body: bytes, expiration: str | None = None) -> Message:
    return Message("", "q", encode_properties(BasicProperties(expiration=expiration)), body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("1500", 1500), ("4294967295", 4294967295)],
)
def test_parse_expiration(value: str, expected: int) -> None:
    assert ttl.parse_expiration(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("10s", '{leftover_string,"s"}'),
        ("4294967296", "{value_too_large,4294967296,4294967295}"),
    ],
)
def test_parse_expiration_refuses(value: str, reason: str) -> None:
    with pytest.raises(ChannelError) as caught:
        ttl.parse_expiration(value)
    assert caught.value.reply_code == 406
    assert caught.value.reply_text == f"PRECONDITION_FAILED - invalid expiration '{value}': {reason}"


def test_deadline_takes_the_earlier() -> None:
    assert ttl.deadline(1000, None, None) == 0
    assert ttl.deadline(1000, 50, None) == 1050
    assert ttl.deadline(1000, None, 70) == 1070
    assert ttl.deadline(1000, 50, 70) == 1050
    assert ttl.deadline(1000, 90, 70) == 1070


def test_expired_entries_leave_at_the_head_and_on_tick() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", arguments={"x-message-ttl": 60_000})
    assert queue.features is not None and queue.features.message_ttl == 60_000
    offer(queue, _message(b"a"))
    offer(queue, _message(b"b"))
    assert queue.ready_count == 2
    tick_queues([vhost], ttl.now_ms() + 61_000)
    assert queue.ready_count == 0


def test_ttl_zero_reaches_a_consumer_with_credit() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", arguments={"x-message-ttl": 0})
    consumer = FakeConsumer("c", credit=1)
    queue.add_consumer(consumer)
    offer(queue, _message(b"taken"))
    offer(queue, _message(b"expired"))
    assert consumer.bodies() == [b"taken"]
    assert queue.ready_count == 0


def test_requeued_entry_keeps_its_deadline() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", arguments={"x-message-ttl": 60_000})
    offer(queue, _message(b"a"))
    entry = queue.get()
    assert entry is not None and entry.deadline > 0
    deadline = entry.deadline
    queue.requeue([entry])
    again = queue.get()
    assert again is entry and again.deadline == deadline


def test_a_message_expiration_expires_on_a_plain_queue_without_features() -> None:
    """A per-message expiration converts nothing: the queue keeps no features and expires at its head."""
    vhost = VHost()
    queue = vhost.declare_queue("q")
    assert queue.plain
    offer(queue, _message(b"short", expiration="60000"))
    offer(queue, _message(b"kept"))
    assert queue.features is None and not queue.plain
    tick_queues([vhost], ttl.now_ms() + 61_000)
    assert queue.ready_count == 1


def test_a_transient_publish_counts_the_queue_ttl_from_now() -> None:
    """A transient message without properties takes the publish path that reads no clock: the queue's
    x-message-ttl must still count from now, not from the epoch (it expired at once)."""
    vhost = VHost()
    queue = vhost.declare_queue("q", arguments={"x-message-ttl": 60_000})
    before = now_ms()
    vhost.publish_now(Message("", "q", b"\x00\x00", b"kept"), [queue])
    entry = queue.get()
    assert entry is not None and before + 60_000 <= entry.deadline <= now_ms() + 60_000
