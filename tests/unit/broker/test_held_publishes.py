"""HeldPublishes: confirmed publishes wait for the journal and leave in publish order, stored or failed."""

from __future__ import annotations

from ottermq.broker.confirms import HeldPublishes


def test_a_publish_leaves_once_it_and_every_earlier_one_are_settled() -> None:
    held: HeldPublishes[str] = HeldPublishes()
    a = held.hold("a")
    transient = held.hold("t", stored=True)  # needs no journal, but waits behind "a"
    b = held.hold("b")
    assert len(held) == 3
    assert held.settle(b, True) == []  # "a" is still waiting
    assert held.settle(a, False) == [("a", False), ("t", True), ("b", True)]
    assert len(held) == 0
    assert transient.item == "t"


def test_settled_in_order_one_by_one() -> None:
    held: HeldPublishes[int] = HeldPublishes()
    items = [held.hold(i) for i in range(3)]
    assert [held.settle(item, True) for item in items] == [[(0, True)], [(1, True)], [(2, True)]]
