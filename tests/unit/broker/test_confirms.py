"""ConfirmTracker: ordered release, coalescing into multiple acks, nack runs."""

from ottermq.broker.confirms import ConfirmTracker


def published(n: int) -> ConfirmTracker:
    tracker = ConfirmTracker()
    for expected in range(1, n + 1):
        assert tracker.publish() == expected
    return tracker


def test_single_confirm_is_a_plain_ack() -> None:
    tracker = published(1)
    tracker.settle(1)
    assert tracker.drain() == [(1, False, True)]
    assert tracker.drain() == []
    assert tracker.unconfirmed == 0


def test_contiguous_confirms_coalesce() -> None:
    tracker = published(5)
    for seq in (1, 2, 3, 4, 5):
        tracker.settle(seq)
    assert tracker.drain() == [(5, True, True)]


def test_out_of_order_settlement_waits_for_the_gap() -> None:
    tracker = published(4)
    tracker.settle(2)
    tracker.settle(3)
    assert tracker.drain() == []
    assert tracker.unconfirmed == 4
    tracker.settle(1)
    assert tracker.drain() == [(3, True, True)]
    assert tracker.unconfirmed == 1
    tracker.settle(4)
    assert tracker.drain() == [(4, False, True)]


def test_nack_runs_are_separate_frames() -> None:
    tracker = published(6)
    for seq, ack in [(1, True), (2, True), (3, False), (4, False), (5, True), (6, False)]:
        tracker.settle(seq, ack)
    assert tracker.drain() == [(2, True, True), (4, True, False), (5, False, True), (6, False, False)]


def test_publishes_after_a_drain_continue_the_sequence() -> None:
    tracker = published(2)
    tracker.settle(1)
    tracker.settle(2)
    tracker.drain()
    assert tracker.publish() == 3
    tracker.settle(3)
    assert tracker.drain() == [(3, False, True)]
