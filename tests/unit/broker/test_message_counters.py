"""The channels' message counters and `Broker.message_totals`, driven with plain bytes."""

from __future__ import annotations

from ottermq.amqp.frames import encode_method_frame
from ottermq.amqp.methods import (
    BasicAck,
    BasicGet,
    BasicGetOk,
    BasicNack,
    BasicPublish,
    BasicQos,
    BasicQosOk,
    BasicReject,
    BasicReturn,
    ChannelClose,
    ChannelCloseOk,
    ConfirmSelect,
    ConfirmSelectOk,
    TxCommit,
    TxCommitOk,
    TxSelect,
    TxSelectOk,
)
from ottermq.broker import channel_publish
from ottermq.broker.broker import Broker
from ottermq.broker.channel import MESSAGE_COUNTERS

from .test_channel import consume, declare, deliveries
from .test_channel_confirms_tx import SlowJournal
from .test_connection_harness import Client, connected


def changed(broker: Broker) -> dict[str, int]:
    """The totals that are not zero (so a test names every counter it expects to move)."""
    return {name: count for name, count in broker.message_totals().items() if count}


def test_a_fresh_broker_counts_nothing() -> None:
    broker = Broker()
    totals = broker.message_totals()
    assert set(totals) == {*MESSAGE_COUNTERS, "received", "delivered"}
    assert not any(totals.values())


def test_publish_routed_dropped_and_returned() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"routed")
    client.publish(1, "", "nowhere", b"dropped")
    client.publish(1, "", "nowhere", b"returned", mandatory=True)
    client.expect(BasicReturn, 1)
    assert changed(client.broker) == {
        "received": 3,
        "routed": 1,
        "unroutable_dropped": 1,
        "unroutable_returned": 1,
    }


def test_confirms_count_routed_and_unroutable_messages() -> None:
    client = connected()
    declare(client)
    client.method(1, ConfirmSelect())
    client.expect(ConfirmSelectOk, 1)
    for body in (b"a", b"b"):
        client.publish(1, "", "q", body)
        client.expect(BasicAck, 1)
    # An unroutable message is confirmed too (as RabbitMQ does).
    client.publish(1, "", "nowhere", b"c")
    client.expect(BasicAck, 1)
    assert changed(client.broker) == {
        "received": 3,
        "routed": 2,
        "unroutable_dropped": 1,
        "confirmed": 3,
    }


def test_one_multiple_ack_frame_counts_every_message_it_confirms() -> None:
    client = connected()
    declare(client)
    client.method(1, ConfirmSelect())
    client.expect(ConfirmSelectOk, 1)
    batch = b"".join(
        encode_method_frame(1, BasicPublish(0, "", "q", False, False)) + client.content(1, body)
        for body in (b"a", b"b", b"c", b"d")
    )
    client.send(batch)  # one read: one flush of confirms
    ack = client.expect(BasicAck, 1)
    assert (ack.delivery_tag, ack.multiple) == (4, True)
    assert client.silent()
    assert client.broker.message_totals()["confirmed"] == 4


def test_consume_counts_auto_and_manual_ack_apart() -> None:
    client = connected()
    declare(client, "auto")
    declare(client, "manual")
    consume(client, "auto", no_ack=True)
    consume(client, "manual")
    client.publish(1, "", "auto", b"a")
    client.publish(1, "", "manual", b"m1")
    client.publish(1, "", "manual", b"m2")
    assert len(deliveries(client)) == 3
    assert changed(client.broker) == {
        "received": 3,
        "routed": 3,
        "delivered": 3,
        "delivered_consume_auto_ack": 1,
        "delivered_consume_manual_ack": 2,
    }


def test_get_counts_auto_and_manual_ack_apart() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"a")
    client.publish(1, "", "q", b"b")
    client.method(1, BasicGet(queue="q", no_ack=True))
    client.expect(BasicGetOk, 1)
    client.expect_content()
    client.method(1, BasicGet(queue="q", no_ack=False))
    client.expect(BasicGetOk, 1)
    client.expect_content()
    assert changed(client.broker) == {
        "received": 2,
        "routed": 2,
        "delivered": 2,
        "delivered_get_auto_ack": 1,
        "delivered_get_manual_ack": 1,
    }


def test_reject_with_requeue_counts_a_redelivery() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"a")
    client.method(1, BasicGet(queue="q"))
    client.expect(BasicGetOk, 1)
    client.expect_content()
    client.method(1, BasicReject(1, True))
    client.method(1, BasicGet(queue="q"))
    assert client.expect(BasicGetOk, 1).redelivered
    client.expect_content()
    # A nack with requeue then a consumer: a redelivery through basic.consume.
    client.method(1, BasicNack(2, False, True))
    consume(client)
    assert [d.redelivered for d, _ in deliveries(client)] == [True]
    totals = client.broker.message_totals()
    assert totals["redelivered"] == 2
    assert totals["delivered"] == 3
    assert totals["acknowledged"] == 0  # rejects and nacks are not acks


def test_ack_multiple_counts_every_message() -> None:
    client = connected()
    declare(client)
    client.method(1, BasicQos(0, 10, False))
    client.expect(BasicQosOk, 1)
    consume(client)
    for i in range(4):
        client.publish(1, "", "q", b"%d" % i)
    deliveries(client)
    client.method(1, BasicAck(3, True))
    assert client.broker.message_totals()["acknowledged"] == 3
    client.method(1, BasicAck(4, False))
    assert client.broker.message_totals()["acknowledged"] == 4


def test_acks_in_a_transaction_count_at_commit() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"a")
    client.method(1, TxSelect())
    client.expect(TxSelectOk, 1)
    client.method(1, BasicGet(queue="q"))
    client.expect(BasicGetOk, 1)
    client.expect_content()
    client.method(1, BasicAck(1, False))
    client.publish(1, "", "q", b"b")
    assert client.broker.message_totals()["acknowledged"] == 0
    assert client.broker.message_totals()["received"] == 1
    client.method(1, TxCommit())
    client.expect(TxCommitOk, 1)
    assert client.broker.message_totals()["acknowledged"] == 1
    assert client.broker.message_totals()["received"] == 2


def test_counts_survive_a_channel_close() -> None:
    client = connected()
    declare(client)
    consume(client, no_ack=True)
    client.publish(1, "", "q", b"a")
    client.publish(1, "", "none", b"b")
    deliveries(client)
    before = client.broker.message_totals()
    client.method(1, ChannelClose(200, "bye", 0, 0))
    client.expect(ChannelCloseOk, 1)
    assert 1 not in client.conn.channels
    assert client.broker.message_totals() == before
    assert client.broker.message_counts["routed"] == 1  # folded into the broker
    # A new channel starts from zero and adds to the broker's totals.
    client.open_channel(2)
    client.publish(2, "", "q", b"c")
    deliveries(client)
    assert client.broker.message_totals()["routed"] == 2


def test_counts_survive_a_channel_error_and_a_lost_connection() -> None:
    broker = Broker()
    client = connected(broker)
    declare(client)
    client.publish(1, "", "q", b"a")
    client.method(1, BasicAck(9, False))  # unknown tag: the broker closes the channel (406)
    client.expect(ChannelClose, 1)
    # The channel waits for close-ok but its counts are already the broker's: nothing counted twice.
    assert broker.message_totals()["routed"] == 1
    client.method(1, ChannelCloseOk())
    assert broker.message_totals()["routed"] == 1
    client.open_channel(1)
    client.publish(1, "", "q", b"b")
    client.conn.connection_lost()
    assert broker.message_totals()["routed"] == 2
    other = connected(broker)
    other.publish(1, "", "q", b"c")
    assert broker.message_totals()["routed"] == 3


def test_totals_add_every_open_channel_of_every_connection() -> None:
    broker = Broker()
    clients: list[Client] = [connected(broker) for _ in range(3)]
    for client in clients:
        client.open_channel(2)
        for channel in (1, 2):
            client.publish(channel, "", "nowhere", b"x")
    assert broker.message_totals()["unroutable_dropped"] == 6


def test_confirmed_never_steps_back_when_confirms_settle_out_of_order() -> None:
    """A transient message is settled at once, an earlier persistent one only when the journal syncs:
    the count grows by one each time (a Prometheus counter must never go back)."""
    journal = SlowJournal()
    broker = Broker(journal=journal)
    client = connected(broker)
    client.method(1, ConfirmSelect())
    client.expect(ConfirmSelectOk, 1)
    channel = client.conn.channels[1]
    assert channel.confirms is not None
    channel.confirms.publish()  # seq 1: a message the journal holds
    position = journal.append(object())  # type: ignore[arg-type]
    journal.when_durable(position, lambda: channel_publish.confirmed(channel, 1))
    declare(client)
    client.publish(1, "", "q", b"transient")  # seq 2: settled at once, acked only after seq 1
    seen = [broker.message_totals()["confirmed"]]
    journal.sync()
    client.transport.run_timers()
    seen.append(broker.message_totals()["confirmed"])
    ack = client.expect(BasicAck, 1)
    assert (ack.delivery_tag, ack.multiple) == (2, True)
    assert seen == [1, 2]
