"""UnackedTracker: delivery tags, single and multiple settlement, unknown tags, restore."""

import pytest

from ottermq.amqp.errors import ChannelError
from ottermq.broker.unacked import UnackedTracker


def filled(n: int) -> UnackedTracker[str]:
    tracker: UnackedTracker[str] = UnackedTracker()
    for _ in range(n):
        tag = tracker.next_tag()
        tracker.track(tag, f"m{tag}")
    return tracker


def test_tags_start_at_one_and_count_untracked_deliveries() -> None:
    tracker: UnackedTracker[str] = UnackedTracker()
    assert tracker.next_tag() == 1
    assert tracker.next_tag() == 2  # a no-ack delivery: allocated, never tracked
    tracker.track(3 if tracker.next_tag() == 3 else 0, "x")
    assert tracker.tags() == [3]


def test_single_ack_takes_one() -> None:
    tracker = filled(3)
    assert tracker.settle(2, multiple=False) == ["m2"]
    assert tracker.tags() == [1, 3]


def test_multiple_takes_everything_up_to_the_tag() -> None:
    tracker = filled(5)
    tracker.settle(2, multiple=False)
    assert tracker.settle(4, multiple=True) == ["m1", "m3", "m4"]
    assert tracker.tags() == [5]


def test_multiple_with_tag_zero_takes_all() -> None:
    tracker = filled(3)
    assert tracker.settle(0, multiple=True) == ["m1", "m2", "m3"]
    assert len(tracker) == 0
    assert tracker.next_tag() == 4


@pytest.mark.parametrize(("tag", "multiple"), [(7, False), (7, True), (0, False)])
def test_unknown_tag_is_406(tag: int, multiple: bool) -> None:
    tracker = filled(3)
    with pytest.raises(ChannelError) as info:
        tracker.settle(tag, multiple)
    assert info.value.reply_code == 406
    assert info.value.reply_text == f"PRECONDITION_FAILED - unknown delivery tag {tag}"


def test_acking_twice_is_unknown() -> None:
    tracker = filled(2)
    tracker.settle(1, multiple=False)
    with pytest.raises(ChannelError):
        tracker.settle(1, multiple=False)


def test_take_all_and_restore_keep_tag_order() -> None:
    tracker = filled(4)
    taken = tracker.settle(3, multiple=True)
    assert taken == ["m1", "m2", "m3"]
    tracker.restore([(2, "m2"), (1, "m1")])
    assert tracker.tags() == [1, 2, 4]
    assert tracker.take_all() == ["m1", "m2", "m4"]
    assert 4 not in tracker
