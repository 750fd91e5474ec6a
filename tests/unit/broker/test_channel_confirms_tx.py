"""Publisher confirms and transactions on a channel, driven with plain bytes."""

from __future__ import annotations

from collections.abc import Callable

from ottermq.amqp.frames import encode_method_frame
from ottermq.amqp.methods import (
    BasicAck,
    BasicConsume,
    BasicConsumeOk,
    BasicDeliver,
    BasicGet,
    BasicGetEmpty,
    BasicGetOk,
    BasicNack,
    BasicPublish,
    BasicReturn,
    ChannelClose,
    ChannelCloseOk,
    ConfirmSelect,
    ConfirmSelectOk,
    QueueDeclare,
    QueueDeclareOk,
    TxCommit,
    TxCommitOk,
    TxRollback,
    TxRollbackOk,
    TxSelect,
    TxSelectOk,
)
from ottermq.broker import channel_publish
from ottermq.broker.broker import Broker
from ottermq.broker.events import Event

from .test_connection_harness import Client, connected


class SlowJournal:
    """A journal whose positions become durable only when the test says so."""

    def __init__(self) -> None:
        self.position = 0
        self.durable_position = 0
        self.failed = False
        self.suspended = False
        self.last_loc = 0
        self.waiting: list[tuple[int, Callable[[], None]]] = []

    @property
    def next_position(self) -> int:
        return self.position + 1

    def append(self, event: Event) -> int:
        self.position += 1
        return self.position

    def when_durable(
        self, position: int, callback: Callable[[], None], failed: Callable[[], None] | None = None
    ) -> None:
        if position <= self.durable_position:
            callback()
        else:
            self.waiting.append((position, callback))

    def sync(self) -> None:
        self.durable_position = self.position
        waiting, self.waiting = self.waiting, []
        for _, callback in waiting:
            callback()


def select_confirms(client: Client, channel: int = 1) -> None:
    client.method(channel, ConfirmSelect())
    client.expect(ConfirmSelectOk, channel)


def publish_frames(
    client: Client, routing_key: str, body: bytes, exchange: str = "", mandatory: bool = False
) -> bytes:
    return encode_method_frame(1, BasicPublish(0, exchange, routing_key, mandatory)) + client.content(1, body)


def declare(client: Client, name: str = "q") -> None:
    client.method(1, QueueDeclare(queue=name))
    client.expect(QueueDeclareOk, 1)


def test_confirms_of_one_batch_coalesce_into_one_multiple_ack() -> None:
    client = connected()
    declare(client)
    select_confirms(client)
    client.send(b"".join(publish_frames(client, "q", b"%d" % i) for i in range(3)))
    ack = client.expect(BasicAck, 1)
    assert (ack.delivery_tag, ack.multiple) == (3, True)
    assert client.silent()
    client.publish(1, "", "q", b"next")
    ack = client.expect(BasicAck, 1)
    assert (ack.delivery_tag, ack.multiple) == (4, False)


def test_unroutable_mandatory_is_returned_then_acked() -> None:
    client = connected()
    select_confirms(client)
    client.publish(1, "amq.direct", "nowhere", b"x", mandatory=True)
    client.expect(BasicReturn, 1)
    client.expect_content()
    assert client.expect(BasicAck, 1).delivery_tag == 1
    client.publish(1, "amq.direct", "nowhere", b"y")
    assert client.expect(BasicAck, 1).delivery_tag == 2


def test_confirm_select_nowait_sends_nothing() -> None:
    client = connected()
    client.method(1, ConfirmSelect(True))
    assert client.silent()
    client.method(1, ConfirmSelect())
    client.expect(ConfirmSelectOk, 1)


def test_no_acks_without_confirm_mode() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"x")
    assert client.silent()


def test_acks_wait_for_the_journal_when_a_position_is_pending() -> None:
    journal = SlowJournal()
    broker = Broker(journal=journal)
    client = connected(broker)
    select_confirms(client)
    channel = client.conn.channels[1]
    channel.confirms.publish() if channel.confirms else None  # seq 1: a message held by the journal
    position = journal.append(object())  # type: ignore[arg-type]
    journal.when_durable(position, lambda: channel_publish.confirmed(channel, 1))
    declare(client)
    client.publish(1, "", "q", b"transient")  # seq 2, confirmed at once but after 1
    assert client.silent()
    journal.sync()
    client.transport.run_timers()
    ack = client.expect(BasicAck, 1)
    assert (ack.delivery_tag, ack.multiple) == (2, True)


def test_tx_and_confirm_do_not_mix() -> None:
    client = connected()
    select_confirms(client)
    client.method(1, TxSelect())
    close = client.expect(ChannelClose, 1)
    assert (close.reply_code, close.reply_text) == (
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    )
    assert (close.class_id, close.method_id) == (90, 10)
    client.method(1, ChannelCloseOk())
    client.open_channel(1)
    client.method(1, TxSelect())
    client.expect(TxSelectOk, 1)
    client.method(1, ConfirmSelect())
    close = client.expect(ChannelClose, 1)
    assert (close.reply_code, close.reply_text) == (
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    )


def test_commit_and_rollback_need_tx_select() -> None:
    for method in (TxCommit(), TxRollback()):
        client = connected()
        client.method(1, method)
        close = client.expect(ChannelClose, 1)
        assert (close.reply_code, close.reply_text) == (
            406,
            "PRECONDITION_FAILED - channel is not transactional",
        )


def test_tx_publishes_wait_for_commit() -> None:
    client = connected()
    declare(client)
    client.method(1, TxSelect())
    client.expect(TxSelectOk, 1)
    client.publish(1, "", "q", b"a")
    client.publish(1, "", "q", b"b")
    assert client.broker.vhosts["/"].queues["q"].ready_count == 0
    client.method(1, TxCommit())
    client.expect(TxCommitOk, 1)
    assert client.broker.vhosts["/"].queues["q"].ready_count == 2


def test_tx_rollback_discards_publishes() -> None:
    client = connected()
    declare(client)
    client.method(1, TxSelect())
    client.expect(TxSelectOk, 1)
    client.publish(1, "", "q", b"a")
    client.method(1, TxRollback())
    client.expect(TxRollbackOk, 1)
    client.method(1, TxCommit())
    client.expect(TxCommitOk, 1)
    client.method(1, BasicGet(queue="q"))
    client.expect(BasicGetEmpty, 1)


def test_tx_acks_apply_on_commit_and_return_on_rollback() -> None:
    client = connected()
    declare(client)
    for body in (b"a", b"b"):
        client.publish(1, "", "q", body)
    client.method(1, TxSelect())
    client.expect(TxSelectOk, 1)
    client.method(1, BasicConsume(queue="q", consumer_tag="c"))
    client.expect(BasicConsumeOk, 1)
    client.expect(BasicDeliver, 1)
    client.expect_content()
    client.expect(BasicDeliver, 1)
    client.expect_content()
    channel = client.conn.channels[1]
    client.method(1, BasicAck(1, False))
    assert channel.unacked.tags() == [2]
    client.method(1, TxRollback())
    client.expect(TxRollbackOk, 1)
    assert channel.unacked.tags() == [1, 2]
    client.method(1, BasicAck(1, False))
    client.method(1, BasicNack(2, False, False))
    client.method(1, TxCommit())
    client.expect(TxCommitOk, 1)
    assert channel.unacked.tags() == []
    assert client.broker.vhosts["/"].queues["q"].ready_count == 0


def test_tx_uncommitted_acks_are_requeued_when_the_channel_closes() -> None:
    client = connected()
    declare(client)
    client.publish(1, "", "q", b"a")
    client.method(1, TxSelect())
    client.expect(TxSelectOk, 1)
    client.method(1, BasicGet(queue="q"))
    client.expect(BasicGetOk, 1)
    client.expect_content()
    client.method(1, BasicAck(1, False))
    client.method(1, ChannelClose(200, "", 0, 0))
    client.expect(ChannelCloseOk, 1)
    client.open_channel(2)
    client.method(2, BasicGet(queue="q", no_ack=True))
    assert client.expect(BasicGetOk, 2).redelivered is True


def test_tx_mandatory_return_happens_at_commit() -> None:
    client = connected()
    client.method(1, TxSelect())
    client.expect(TxSelectOk, 1)
    client.publish(1, "amq.direct", "nowhere", b"x", mandatory=True)
    assert client.silent()
    client.method(1, TxCommit())
    client.expect(BasicReturn, 1)
    client.expect_content()
    client.expect(TxCommitOk, 1)
