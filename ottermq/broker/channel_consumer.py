"""A channel's consumers (basic.consume, basic.cancel, basic.qos) and basic.get: how it takes messages.

Strategy: a `ChannelConsumer` is the `Consumer` a queue dispatches to; `deliver` is on the per-message path
and is written out by hand (basic.deliver straight to the transport, the delivery tracked in the channel's
`UnackedTracker` unless no-ack). The handlers are plain functions taking the channel, called through the
channel's table of handlers (channel.py).
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import NOT_ALLOWED, PRECONDITION_FAILED
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.amqp.frames import encode_deliver, encode_get_ok
from ottermq.amqp.methods import (
    BasicCancel,
    BasicCancelOk,
    BasicConsume,
    BasicConsumeOk,
    BasicGet,
    BasicGetEmpty,
    BasicQos,
    BasicQosOk,
)
from ottermq.broker import reply_to
from ottermq.broker.content import UnreadableContent
from ottermq.broker.message import QueueEntry
from ottermq.broker.qos import PrefetchWindow
from ottermq.broker.stream import StreamQueue

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel
    from ottermq.broker.queue import Queue

# An unacknowledged delivery: (delivery tag, queue, entry, consumer or None for basic.get).
Delivery = tuple[int, "Queue", QueueEntry, "ChannelConsumer | None"]
# `ChannelConsumer.credit` with no prefetch bound (auto-ack, or no limit set).
UNLIMITED: Final = 1 << 62


def new_consumer_tag() -> str:
    """A server-generated consumer tag: "amq.ctag-" and 22 URL-safe base64 characters."""
    return "amq.ctag-" + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


class ChannelConsumer:
    """A basic.consume subscription; the `Consumer` the queue dispatches to."""

    __slots__ = (
        "active",
        "arguments",
        "channel",
        "exclusive",
        "no_ack",
        "priority",
        "queue",
        "tag",
        "window",
    )

    def __init__(
        self,
        channel: Channel,
        tag: str,
        queue: Queue,
        no_ack: bool,
        exclusive: bool,
        priority: int,
        prefetch: int,
        arguments: dict[str, Any],
    ) -> None:
        self.channel = channel
        self.tag = tag
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.priority = priority
        self.window = PrefetchWindow(prefetch)
        self.arguments = arguments
        # False until consume-ok is written (deliveries must follow it) and after cancellation.
        self.active = False

    def __repr__(self) -> str:
        return f"ChannelConsumer({self.tag!r}, queue={self.queue.name!r})"

    def has_credit(self) -> bool:
        """Prefetch windows open and socket writable."""
        channel = self.channel
        if not (self.active and channel.transport.is_writable):
            return False
        if self.no_ack:
            return True
        window = self.window
        shared = channel.qos.shared
        return (window.limit == 0 or window.outstanding < window.limit) and (
            shared.limit == 0 or shared.outstanding < shared.limit
        )

    def credit(self) -> int:
        """How many deliveries `has_credit` would allow one after another now (UNLIMITED: no bound)."""
        channel = self.channel
        if not (self.active and channel.transport.is_writable):
            return 0
        if self.no_ack:
            return UNLIMITED
        window = self.window
        shared = channel.qos.shared
        credit = window.limit - window.outstanding if window.limit else UNLIMITED
        if shared.limit:
            credit = min(credit, shared.limit - shared.outstanding)
        return credit

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        """Send basic.deliver and track the delivery until it is settled."""
        try:
            # A plain queue (no features) delivers the stored content as is: one call less per delivery.
            message = queue.contents.get(entry.msg_id) if queue.plain else queue.content_of(entry)
        except UnreadableContent as exc:
            queue.unreadable(entry, exc)  # dropped; the queue goes on with the next one
            return
        channel = self.channel
        unacked = channel.unacked
        tag = unacked.last_tag = unacked.last_tag + 1
        connection = channel.connection
        connection.sent = True
        channel.transport.write(
            encode_deliver(
                channel.number,
                self.tag,
                tag,
                entry.redelivered,
                message.exchange,
                message.routing_key,
                message.properties,
                message.body,
                connection.frame_max,
            )
        )
        stats = queue.stats
        if self.no_ack:
            queue.settle((entry,))
            channel.n_delivered_consume_auto_ack += 1
            stats.deliver_no_ack += 1
        else:
            unacked.track(tag, (tag, queue, entry, self))
            if not queue.plain:
                queue.checked_out(entry)
            self.window.outstanding += 1
            channel.qos.shared.outstanding += 1
            channel.n_delivered_consume_manual_ack += 1
            stats.deliver += 1
        if entry.redelivered:
            channel.n_redelivered += 1
            stats.redeliver += 1

    def cancelled_by_broker(self) -> None:
        """The queue was deleted: forget the consumer, tell a client that asked (basic.cancel)."""
        self.active = False
        channel = self.channel
        if channel.consumers.get(self.tag) is self:
            del channel.consumers[self.tag]
            if channel.deferred_cancels is not None:
                channel.deferred_cancels.append(self.tag)
            elif channel.is_open and channel.connection.consumer_cancel_notify:
                channel.connection.send_method(channel.number, BasicCancel(self.tag, True))


def consume(channel: Channel, method: BasicConsume) -> None:
    """basic.consume: subscribe to a queue (or to direct reply-to)."""
    tag = method.consumer_tag or new_consumer_tag()
    if method.queue == reply_to.REPLY_QUEUE:
        reply_to.consume(channel, method, tag)
        return
    if tag in channel.consumers:
        raise AMQPConnectionError(NOT_ALLOWED, f"NOT_ALLOWED - attempt to reuse consumer tag '{tag}'")
    name = channel.queue_name(method.queue)
    channel.guard.check_method(method, name)
    queue = channel.vhost.lookup_queue(name, channel.connection)
    arguments = method.arguments or {}
    priority = arguments.get("x-priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"PRECONDITION_FAILED - invalid arg 'x-priority' for {queue.resource}",
        )
    consumer = ChannelConsumer(
        channel,
        tag,
        queue,
        method.no_ack,
        method.exclusive,
        priority,
        channel.qos.consumer_prefetch,
        arguments,
    )
    if isinstance(queue, StreamQueue):
        queue.check_consume(method.no_ack, channel.qos.consumer_prefetch)
        queue.attach(consumer, queue.start_offset(arguments.get("x-stream-offset")))
    else:
        queue.add_consumer(consumer)
    channel.consumers[tag] = consumer
    if not method.nowait:
        channel.connection.send_method(channel.number, BasicConsumeOk(tag))
    consumer.active = True
    queue.dispatch()


def cancel(channel: Channel, method: BasicCancel) -> None:
    """basic.cancel: end a subscription; an unknown tag is answered all the same."""
    consumer = channel.consumers.pop(method.consumer_tag, None)
    if consumer is None and channel.reply is not None:
        reply_to.cancel(channel, method.consumer_tag)
    if consumer is not None:
        consumer.active = False
        consumer.queue.remove_consumer(consumer)
    if not method.nowait:
        channel.connection.send_method(channel.number, BasicCancelOk(method.consumer_tag))


def get(channel: Channel, method: BasicGet) -> None:
    """basic.get: one message, tracked until settled unless no-ack."""
    name = channel.queue_name(method.queue)
    channel.guard.check_method(method, name)
    queue = channel.vhost.lookup_queue(name, channel.connection)
    while True:
        entry = queue.get()
        if entry is None:
            channel.n_get_empty += 1
            queue.stats.get_empty += 1
            channel.connection.send_method(channel.number, BasicGetEmpty())
            return
        try:
            message = queue.content_of(entry)
        except UnreadableContent as exc:
            queue.unreadable(entry, exc)  # dropped: the next message is the answer
            continue
        break
    unacked = channel.unacked
    tag = unacked.next_tag()
    channel.connection.write(
        encode_get_ok(
            channel.number,
            tag,
            entry.redelivered,
            message.exchange,
            message.routing_key,
            queue.ready_count,
            message.properties,
            message.body,
            channel.connection.frame_max,
        )
    )
    stats = queue.stats
    if method.no_ack:
        queue.settle((entry,))
        channel.n_delivered_get_auto_ack += 1
        stats.get_no_ack += 1
    else:
        unacked.track(tag, (tag, queue, entry, None))
        if not queue.plain:
            queue.checked_out(entry)
        channel.n_delivered_get_manual_ack += 1
        stats.get += 1
    if entry.redelivered:
        channel.n_redelivered += 1
        stats.redeliver += 1


def qos(channel: Channel, method: BasicQos) -> None:
    """basic.qos: new prefetch limits; consumers whose window opened deliver again."""
    channel.qos.apply(method.prefetch_size, method.prefetch_count, method.global_qos)
    channel.connection.send_method(channel.number, BasicQosOk())
    channel.dispatch_all()
