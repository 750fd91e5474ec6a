"""Delivery limit: counting returns, the x-delivery-count header, dropping over the limit."""

from __future__ import annotations

from ottermq.broker.delivery_limit import DeliveryCounts, with_delivery_count
from ottermq.broker.message import Message, QueueEntry
from ottermq.broker.vhost import VHost


def _message(body: bytes = b"m") -> Message:
    return Message("", "q", b"\x00\x00", body)


def test_counts_and_limit() -> None:
    counts = DeliveryCounts(1)
    entry = QueueEntry(_message(), 1)
    keep, over = counts.returned([entry])
    assert (keep, over) == ([entry], [])
    assert (entry.message.headers or {})["x-delivery-count"] == 1
    keep, over = counts.returned([entry])
    assert (keep, over) == ([], [entry])


def test_copy_keeps_the_log_identity() -> None:
    message = _message()
    message.msg_id = 42
    copy = with_delivery_count(message, 3)
    assert copy.msg_id == 42 and copy.body == b"m"
    assert (copy.headers or {}) == {"x-delivery-count": 3}


def test_queue_drops_after_the_limit() -> None:
    queue = VHost().declare_queue("q", arguments={"x-delivery-limit": 1})
    queue.enqueue(_message())
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
        queue.enqueue(_message(body))
    first, second = queue.get(), queue.get()
    assert first is not None and second is not None
    queue.requeue([first, second])  # one failed delivery each
    delivered = queue.get()
    assert delivered is not None and delivered.message.body == b"a"
    counts = queue.features.delivery
    assert len(counts) == 2
    assert queue.purge() == 1  # "b"
    assert len(counts) == 1
    queue.requeue([delivered])
    again = queue.get()
    assert again is not None and (again.message.headers or {})["x-delivery-count"] == 2
