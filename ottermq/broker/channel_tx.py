"""Transactions on a channel: tx.select, tx.commit, tx.rollback.

Strategy: on a transactional channel publishes and settlements are held by the channel's `TxBuffer`
(tx.py) in arrival order; the publishes' bytes count as held in the memory account (`tx_bytes`). A
commit applies them in that order inside one journal record (`vhost.begin_tx` / `end_tx`: all or
nothing). Its publishes reach their queues once that record is durable, so a commit that fails is not
delivered; meanwhile the channel is `committing` and any other method is a 504 CHANNEL_ERROR. A rollback
drops the publishes and hands the settled deliveries back to the unacked set.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from ottermq.amqp.constants import INTERNAL_ERROR, PRECONDITION_FAILED
from ottermq.amqp.errors import ChannelError
from ottermq.amqp.methods import TxCommit, TxCommitOk, TxRollback, TxRollbackOk, TxSelect, TxSelectOk
from ottermq.broker.apply import Placed
from ottermq.broker.channel_acks import apply_settle
from ottermq.broker.channel_publish import route
from ottermq.broker.message import Message
from ottermq.broker.tx import PUBLISH, TxBuffer

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel
    from ottermq.broker.queue import Queue
    from ottermq.broker.stream import StreamLog


def select(channel: Channel, method: TxSelect) -> None:
    """tx.select: the channel is transactional from now on (not on a confirm channel)."""
    if channel.confirms is not None:
        raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")
    if channel.tx is None:
        channel.tx = TxBuffer()
    channel.connection.send_method(channel.number, TxSelectOk())


def commit(channel: Channel, method: TxCommit) -> None:
    """tx.commit: apply the buffered work; commit-ok once it is durable."""
    tx = channel.tx
    if tx is None:
        raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional")
    vhost = channel.vhost
    # Every publish and removal of the commit goes into one journal record (all or nothing). Its
    # publishes reach their queues once that record is durable: a commit that fails is not delivered.
    publishes: list[tuple[Message, Sequence[Queue]]] = []
    channel.tx_publishes = publishes
    streams: list[tuple[StreamLog, int]] = []
    channel.tx_streams = streams
    release_tx_bytes(channel)
    vhost.begin_tx()
    try:
        for op in tx.commit():
            if op.kind == PUBLISH:
                assert op.publish is not None
                message, exchange, mandatory = op.publish
                route(channel, message, exchange, mandatory)
            elif op.deliveries:
                apply_settle(channel, op.kind, op.deliveries)
    finally:
        channel.tx_publishes = None
        channel.tx_streams = []
        position, placed = vhost.end_tx(publishes)
    # Commit-ok once the journal's record and every stream append of the commit are durable.
    parts = [1 + len(streams), 1]  # parts left, all durable so far
    channel.committing = bool(position or streams)
    if position:
        channel.connection.broker.journal.when_durable(
            position,
            partial(_part_durable, channel, placed, parts, True),
            partial(_part_durable, channel, placed, parts, False),
        )
    else:
        _part_durable(channel, placed, parts, True)
    for log, offset in streams:
        log.when_durable(offset, partial(_part_durable, channel, placed, parts))


def _part_durable(channel: Channel, placed: list[list[Placed]], parts: list[int], ok: bool) -> None:
    """One part of a commit (its journal record, or one stream append) is durable, or never will be:
    the commit is answered after the last."""
    parts[0] -= 1
    parts[1] = parts[1] if ok else 0
    if parts[0] > 0:
        return
    if parts[1]:
        _commit_durable(channel, placed)
    else:
        _commit_failed(channel, placed)


def rollback(channel: Channel, method: TxRollback) -> None:
    """tx.rollback: drop the buffered publishes; buffered settlements become unacknowledged again."""
    tx = channel.tx
    if tx is None:
        raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional")
    restored = tx.rollback()
    release_tx_bytes(channel)
    if restored:
        channel.unacked.restore((delivery[0], delivery) for delivery in restored)
    channel.connection.send_method(channel.number, TxRollbackOk())


def release_tx_bytes(channel: Channel) -> None:
    """The buffered publishes leave the transaction's buffer (committed, rolled back, or the channel
    ends): they no longer count as held by it."""
    channel.memory.held_bytes -= channel.tx_bytes
    channel.tx_bytes = 0


def _enqueue_committed(placed: list[list[Placed]]) -> None:
    for entries in placed:
        for queue, entry in entries:
            if queue.deleted:
                queue.contents.release(entry.msg_id)  # 0 for a logged one: the delete gave it back
            else:
                queue.enqueue(entry)


def _commit_durable(channel: Channel, placed: list[list[Placed]]) -> None:
    channel.committing = False
    _enqueue_committed(placed)  # also when the channel closed meanwhile: they are committed
    if channel.is_open:
        channel.connection.send_method(channel.number, TxCommitOk())


def _commit_failed(channel: Channel, placed: list[list[Placed]]) -> None:
    channel.committing = False
    for entries in placed:
        channel.vhost.publish_nacked(entries)
    channel.fail(
        INTERNAL_ERROR,
        "INTERNAL_ERROR - the journal failed: the transaction is not durable",
        TxCommit.CLASS_ID,
        TxCommit.METHOD_ID,
    )
