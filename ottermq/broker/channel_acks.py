"""Settling a channel's deliveries: basic.ack, basic.nack, basic.reject and basic.recover.

Strategy: deliveries awaiting an ack live in the channel's `UnackedTracker` as `Delivery` tuples (tag,
queue, entry, consumer or None for basic.get). A settlement takes them out at once (a second ack of the
same tag is an unknown tag); in a transaction it is held by the `TxBuffer` until tx.commit applies it
(`apply_settle`), otherwise applied now: the queues settle or requeue their entries, grouped by queue
in delivery order, and the consumers' prefetch credit comes back. basic.ack is on the per-message path:
the channel calls `settle` for it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ottermq.amqp.constants import NOT_IMPLEMENTED
from ottermq.amqp.errors import AMQPConnectionError
from ottermq.amqp.methods import BasicNack, BasicRecover, BasicRecoverAsync, BasicRecoverOk, BasicReject
from ottermq.broker.channel_consumer import Delivery
from ottermq.broker.message import QueueEntry
from ottermq.broker.stream import StreamQueue, refuse_nack
from ottermq.broker.tx import ACK, REJECT_DROP, REJECT_REQUEUE

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel
    from ottermq.broker.queue import Queue


def settle(channel: Channel, tag: int, multiple: bool, kind: int) -> None:
    """Settle delivery `tag` (and those before it if `multiple`): `kind` is a tx.py ACK / REJECT_*."""
    deliveries = channel.unacked.settle(tag, multiple)
    if kind != ACK and channel.vhost.streams_declared:
        for delivery in deliveries:
            if isinstance(delivery[1], StreamQueue):
                refuse_nack(delivery[1])
    tx = channel.tx
    if tx is not None:
        tx.settle(kind, deliveries)
        return
    apply_settle(channel, kind, deliveries)


def settle_acks(channel: Channel, acks: Iterable[tuple[int, bool]]) -> None:
    """A run of basic.acks (delivery tag, multiple) outside a transaction: their deliveries are taken
    out ack by ack, then settled together: the run costs one `apply_settle`, and each queue one `settle`
    and one removal event, not one each per ack (the journal gathers a turn's removals into one record per
    queue either way). An unknown tag raises its 406 once the acks before it are settled; the acks after
    it are not handled, as frame by frame."""
    taken: list[Delivery] = []
    take = channel.unacked.settle
    try:
        for tag, multiple in acks:
            taken += take(tag, multiple)
    finally:
        if taken:
            apply_settle(channel, ACK, taken)


def apply_settle(channel: Channel, kind: int, deliveries: list[Delivery]) -> None:
    """Settle or requeue `deliveries` in their queues and give back their prefetch credit."""
    if kind == ACK:
        channel.n_acknowledged += len(deliveries)
    if len(deliveries) == 1:
        _, queue, entry, _ = deliveries[0]
        if kind == REJECT_REQUEUE:
            queue.requeue((entry,))
        else:
            if kind == ACK:
                queue.stats.ack += 1
            queue.settle((entry,), "ack" if kind == ACK else "reject")
    else:
        for queue, entries in by_queue(deliveries).items():
            if kind == REJECT_REQUEUE:
                queue.requeue(entries)
            else:
                if kind == ACK:
                    queue.stats.ack += len(entries)
                queue.settle(entries, "ack" if kind == ACK else "reject")
    _release_credit(channel, deliveries)


def _release_credit(channel: Channel, deliveries: Iterable[Delivery]) -> None:
    """Give back prefetch credit for settled deliveries; dispatch again (after the input batch) if a
    window reopened."""
    shared = channel.qos.shared
    reopened = shared.limit != 0 and shared.outstanding >= shared.limit
    for delivery in deliveries:
        consumer = delivery[3]
        if consumer is None:
            continue
        window = consumer.window
        if window.limit and window.outstanding >= window.limit:
            reopened = True
        window.outstanding -= 1
        shared.outstanding -= 1
    if reopened and channel.is_open:
        channel.dispatch_soon()


def nack(channel: Channel, method: BasicNack) -> None:
    """basic.nack: requeue or drop (dead-letter) deliveries."""
    settle(channel, method.delivery_tag, method.multiple, REJECT_REQUEUE if method.requeue else REJECT_DROP)


def reject(channel: Channel, method: BasicReject) -> None:
    """basic.reject: basic.nack of one delivery."""
    settle(channel, method.delivery_tag, False, REJECT_REQUEUE if method.requeue else REJECT_DROP)


def _recover(channel: Channel, requeue: bool) -> None:
    if not requeue:
        raise AMQPConnectionError(NOT_IMPLEMENTED, "NOT_IMPLEMENTED - requeue=false")
    deliveries = channel.unacked.take_all()
    if deliveries:
        apply_settle(channel, REJECT_REQUEUE, deliveries)


def recover_async(channel: Channel, method: BasicRecoverAsync) -> None:
    """basic.recover-async: every unacknowledged delivery goes back to its queue."""
    _recover(channel, method.requeue)


def recover(channel: Channel, method: BasicRecover) -> None:
    """basic.recover: as recover-async, answered with recover-ok."""
    _recover(channel, method.requeue)
    channel.connection.send_method(channel.number, BasicRecoverOk())


def tag_of(delivery: Delivery) -> int:
    """The delivery tag of `delivery` (a sort key)."""
    return delivery[0]


def by_queue(deliveries: Iterable[Delivery]) -> dict[Queue, list[QueueEntry]]:
    """Entries grouped by their queue, each group in delivery order."""
    grouped: dict[Queue, list[QueueEntry]] = {}
    for _, queue, entry, _ in deliveries:
        entries = grouped.get(queue)
        if entries is None:
            grouped[queue] = [entry]
        else:
            entries.append(entry)
    return grouped
