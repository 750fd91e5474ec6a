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


def test_a_message_held_for_its_record_keeps_its_deadline_for_a_snapshot() -> None:
    """While a confirmed publish waits for its record to be durable, a snapshot lists it among the queue's
    logged entries: with the deadline its TTL gives, or it would never expire after a restart."""
    from ottermq.amqp.properties import BasicProperties, encode_properties
    from ottermq.broker.broker import Broker
    from ottermq.broker.message import Message
    from ottermq.broker.ttl import now_ms

    broker = Broker()
    vhost = broker.vhosts["/"]
    by_queue_ttl = vhost.declare_queue("ttl", durable=True, arguments={"x-message-ttl": 60_000})
    by_expiration = vhost.declare_queue("plain", durable=True)
    expiring = Message(
        "", "plain", encode_properties(BasicProperties(delivery_mode=2, expiration="30000")), b"x"
    )
    plain = Message("", "ttl", encode_properties(BasicProperties(delivery_mode=2)), b"y")
    before = now_ms()
    # Logged and applied; the entries are made ready only when the records are durable.
    vhost.publish(expiring, [by_expiration])
    vhost.publish(plain, [by_queue_ttl])
    (held_expiring,) = by_expiration.logged_entries()
    (held_plain,) = by_queue_ttl.logged_entries()
    assert by_expiration.ready_count == by_queue_ttl.ready_count == 0
    assert before + 30_000 <= held_expiring.deadline <= now_ms() + 30_000
    assert before + 60_000 <= held_plain.deadline <= now_ms() + 60_000
