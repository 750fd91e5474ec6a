"""Length limits of a queue: drop-head, reject-publish, reject-publish-dlx, byte counts."""

from __future__ import annotations

from ottermq.broker.message import Message
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import FakeConsumer, content, offer


def _message(body: bytes) -> Message:
    return Message("", "q", b"\x00\x00", body)


def _bodies(queue: object) -> list[bytes]:
    from ottermq.broker.queue import Queue

    assert isinstance(queue, Queue)
    bodies = []
    while (entry := queue.get()) is not None:
        bodies.append(content(queue, entry).body)
    return bodies


def test_drop_head_by_count() -> None:
    queue = VHost().declare_queue("q", arguments={"x-max-length": 2})
    for body in (b"1", b"2", b"3"):
        assert offer(queue, _message(body))
    assert _bodies(queue) == [b"2", b"3"]


def test_drop_head_by_bytes_and_requeue_accounting() -> None:
    queue = VHost().declare_queue("q", arguments={"x-max-length-bytes": 6})
    for body in (b"aaa", b"bbb", b"ccc"):
        offer(queue, _message(body))
    assert queue.ready_count == 2
    entry = queue.get()
    assert entry is not None and content(queue, entry).body == b"bbb"
    offer(queue, _message(b"ddd"))  # 6 bytes ready again: ccc, ddd
    queue.requeue([entry])  # back at the head: 9 bytes, the head (bbb) goes
    assert _bodies(queue) == [b"ccc", b"ddd"]


def test_reject_publish_refuses_when_full() -> None:
    queue = VHost().declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    assert offer(queue, _message(b"1"))
    assert not offer(queue, _message(b"2"))
    assert _bodies(queue) == [b"1"]
    assert offer(queue, _message(b"3"))


def test_max_length_zero_delivers_to_a_consumer_only() -> None:
    queue = VHost().declare_queue("q", arguments={"x-max-length": 0})
    offer(queue, _message(b"dropped"))
    assert queue.ready_count == 0
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)
    offer(queue, _message(b"taken"))
    assert consumer.bodies() == [b"taken"]


def test_reject_publish_dlx_dead_letters() -> None:
    vhost = VHost()
    vhost.declare_exchange("dlx", "fanout")
    dead = vhost.declare_queue("dead")
    vhost.bind_queue("dead", "dlx")
    queue = vhost.declare_queue(
        "q",
        arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": "dlx"},
    )
    offer(queue, _message(b"1"))
    assert not offer(queue, _message(b"2"))
    got = dead.get()
    assert got is not None and content(queue, got).body == b"2"
    assert (content(queue, got).headers or {})["x-death"][0]["reason"] == "maxlen"


def test_purge_resets_the_byte_count() -> None:
    queue = VHost().declare_queue("q", arguments={"x-max-length-bytes": 4})
    offer(queue, _message(b"abcd"))
    assert queue.purge() == 1
    offer(queue, _message(b"efgh"))
    assert _bodies(queue) == [b"efgh"]
