"""Dead lettering: x-dead-letter-exchange / -routing-key on reject, expiry and max-length; x-death; cycles."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pika

from tests.integration.conftest import Resources, get_message, queue_counts


def _dead_letter_pair(channel: Any, resources: Resources, **extra: Any) -> tuple[str, str, str]:
    """A fanout DLX with a queue bound to it, and a source queue dead-lettering to it."""
    dlx = resources.exchange()
    dead = resources.queue()
    source = resources.queue()
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx)
    channel.queue_declare(source, arguments={"x-dead-letter-exchange": dlx, **extra})
    return dlx, dead, source


def test_reject_without_requeue_dead_letters_with_x_death(channel: Any, resources: Resources) -> None:
    dlx, dead, source = _dead_letter_pair(channel, resources)
    channel.basic_publish("", source, b"poison", pika.BasicProperties(headers={"app": "x"}))
    method, _, _ = get_message(channel, source)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    channel.basic_reject(method.delivery_tag, requeue=False)
    got, props, body = get_message(channel, dead, auto_ack=True)
    assert body == b"poison"
    assert (got.exchange, got.routing_key, got.redelivered) == (dlx, source, False)
    headers = props.headers
    assert headers["app"] == "x"
    assert headers["x-first-death-reason"] == "rejected"
    assert headers["x-first-death-queue"] == source
    assert headers["x-first-death-exchange"] == ""
    [death] = headers["x-death"]
    assert death["count"] == 1
    assert death["reason"] == "rejected"
    assert death["queue"] == source
    assert death["exchange"] == ""
    assert death["routing-keys"] == [source]
    stamp = death["time"]
    assert isinstance(stamp, datetime.datetime)
    assert abs(stamp.replace(tzinfo=datetime.UTC) - before) <= datetime.timedelta(seconds=5)
    assert set(death) == {"count", "reason", "queue", "time", "exchange", "routing-keys"}


def test_nack_without_requeue_dead_letters(channel: Any, resources: Resources) -> None:
    _, dead, source = _dead_letter_pair(channel, resources)
    for body in (b"a", b"b"):
        channel.basic_publish("", source, body)
    get_message(channel, source)
    last, _, _ = get_message(channel, source)
    channel.basic_nack(last.delivery_tag, multiple=True, requeue=False)
    bodies = [get_message(channel, dead, auto_ack=True)[2] for _ in range(2)]
    assert bodies == [b"a", b"b"]


def test_dead_letter_routing_key_replaces_the_keys(channel: Any, resources: Resources) -> None:
    dlx = resources.exchange()
    dead = resources.queue()
    source = resources.queue()
    channel.exchange_declare(dlx, "direct")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx, "dead-key")
    channel.queue_declare(
        source, arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead-key"}
    )
    channel.basic_publish("", source, b"m", pika.BasicProperties(headers={"CC": ["elsewhere"]}))
    method, _, _ = get_message(channel, source)
    channel.basic_reject(method.delivery_tag, requeue=False)
    got, props, _ = get_message(channel, dead, auto_ack=True)
    assert got.routing_key == "dead-key"
    assert "CC" not in props.headers
    assert props.headers["x-death"][0]["routing-keys"] == [source, "elsewhere"]


def test_expired_messages_are_dead_lettered(channel: Any, resources: Resources) -> None:
    _, dead, source = _dead_letter_pair(channel, resources, **{"x-message-ttl": 100})
    channel.basic_publish("", source, b"late", pika.BasicProperties(expiration="50"))
    _, props, body = get_message(channel, dead, auto_ack=True)
    assert body == b"late"
    assert props.expiration is None
    death = props.headers["x-death"][0]
    assert death["reason"] == "expired"
    assert death["original-expiration"] == "50"
    assert props.headers["x-first-death-reason"] == "expired"


def test_max_length_drop_head_dead_letters(channel: Any, resources: Resources) -> None:
    _, dead, source = _dead_letter_pair(channel, resources, **{"x-max-length": 1})
    channel.basic_publish("", source, b"first")
    channel.basic_publish("", source, b"second")
    _, props, body = get_message(channel, dead, auto_ack=True)
    assert body == b"first"
    assert props.headers["x-death"][0]["reason"] == "maxlen"
    assert get_message(channel, source, auto_ack=True)[2] == b"second"


def test_missing_dead_letter_exchange_drops_the_message(channel: Any, resources: Resources) -> None:
    source = resources.queue()
    channel.queue_declare(source, arguments={"x-dead-letter-exchange": "no-such-exchange-here"})
    channel.basic_publish("", source, b"m")
    method, _, _ = get_message(channel, source)
    channel.basic_reject(method.delivery_tag, requeue=False)
    assert queue_counts(channel, source, (0, 0)) == (0, 0)
    assert channel.is_open


def test_repeated_rejects_count_up_in_one_entry(channel: Any, resources: Resources) -> None:
    # A queue dead-lettering to itself: rejects are not a cycle, the count grows.
    source = resources.queue()
    channel.queue_declare(
        source, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": source}
    )
    channel.basic_publish("", source, b"m")
    for count in (1, 2, 3):
        method, _, _ = get_message(channel, source)
        channel.basic_reject(method.delivery_tag, requeue=False)
        _, props, _ = get_message(channel, source)
        [death] = props.headers["x-death"]
        assert death["count"] == count
        channel.basic_recover(requeue=True)


def test_an_expiry_cycle_is_cut(channel: Any, resources: Resources) -> None:
    # a expires into b, b expires back into a: the second arrival at a would close a cycle with no reject
    # in it, so the message is dropped there.
    a = resources.queue()
    b = resources.queue()
    channel.queue_declare(
        a, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": b, "x-message-ttl": 50}
    )
    channel.queue_declare(
        b, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": a, "x-message-ttl": 50}
    )
    channel.basic_publish("", a, b"m")
    time.sleep(2.5)
    assert queue_counts(channel, a, (0, 0)) == (0, 0)
    assert queue_counts(channel, b, (0, 0)) == (0, 0)


def test_dead_lettered_persistent_message_stays_persistent(channel: Any, resources: Resources) -> None:
    _, dead, source = _dead_letter_pair(channel, resources)
    channel.basic_publish("", source, b"m", pika.BasicProperties(delivery_mode=2))
    method, _, _ = get_message(channel, source)
    channel.basic_reject(method.delivery_tag, requeue=False)
    _, props, _ = get_message(channel, dead, auto_ack=True)
    assert props.delivery_mode == 2


def test_durable_queues_expire_and_dead_letter_persistent_messages(
    channel: Any, resources: Resources
) -> None:
    dlx = resources.exchange()
    dead = resources.queue()
    source = resources.queue()
    channel.exchange_declare(dlx, "fanout", durable=True)
    channel.queue_declare(dead, durable=True)
    channel.queue_bind(dead, dlx)
    channel.queue_declare(
        source,
        durable=True,
        arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 100, "x-max-length": 2},
    )
    channel.confirm_delivery()
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", source, body, pika.BasicProperties(delivery_mode=2))
    reasons = []
    for _ in range(3):
        _, props, body = get_message(channel, dead, auto_ack=True)
        reasons.append((body, props.headers["x-death"][0]["reason"]))
    assert reasons == [(b"1", "maxlen"), (b"2", "expired"), (b"3", "expired")]
    assert queue_counts(channel, source, (0, 0)) == (0, 0)
