"""Delivery limit: counting returns, the x-delivery-count header, dropping over the limit."""

from __future__ import annotations

from ottermq.broker.delivery_limit import DeliveryCounts, with_delivery_count
from ottermq.broker.message import Message, QueueEntry
from ottermq.broker.vhost import VHost
from tests.unit.broker.domain_fakes import content, offer


def _message(body: bytes = b"m") -> Message:
    return Message("", "q", b"\x00\x00", body)


def test_counts_and_limit() -> None:
    counts = DeliveryCounts(1)
    entry = QueueEntry(-1, 1, seq=1)
    keep, over = counts.returned([entry])
    assert (keep, over) == ([entry], [])
    assert counts.count(entry) == 1
    keep, over = counts.returned([entry])
    assert (keep, over) == ([], [entry])


def test_copy_carries_the_count() -> None:
    message = _message()
    copy = with_delivery_count(message, 3)
    assert copy.body == b"m"
    assert (copy.headers or {}) == {"x-delivery-count": 3}


def test_queue_drops_after_the_limit() -> None:
    queue = VHost().declare_queue("q", arguments={"x-delivery-limit": 1})
    offer(queue, _message())
    for _ in range(2):
        entry = queue.get()
        assert entry is not None
        queue.requeue([entry])
    assert queue.ready_count == 0


def test_purge_forgets_the_counts_of_purged_messages_only() -> None:
    """Counts are kept by entry; a purge drops the ready entries, so their counts go too, while an entry
    delivered and not yet settled keeps its count (it may still come back)."""
    queue = VHost().declare_queue("q", arguments={"x-delivery-limit": 5})
    for body in (b"a", b"b"):
        offer(queue, _message(body))
    first, second = queue.get(), queue.get()
    assert first is not None and second is not None
    queue.requeue([first, second])  # one failed delivery each
    delivered = queue.get()
    assert delivered is not None and content(queue, delivered).body == b"a"
    assert queue.features is not None
    counts = queue.features.delivery
    assert counts is not None
    assert len(counts) == 2
    assert queue.purge() == 1  # "b"
    assert len(counts) == 1
    queue.requeue([delivered])
    again = queue.get()
    assert again is not None and (content(queue, again).headers or {})["x-delivery-count"] == 2


def test_deleting_the_queue_forgets_the_counts() -> None:
    vhost = VHost()
    queue = vhost.declare_queue("q", arguments={"x-delivery-limit": 5})
    offer(queue, _message(b"a"))
    first = queue.get()
    assert first is not None
    queue.requeue([first])
    assert queue.features is not None and queue.features.delivery is not None
    counts = queue.features.delivery
    assert len(counts) == 1
    vhost.delete_queue("q")
    assert len(counts) == 0
