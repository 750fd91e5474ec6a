"""One AMQP channel: its state, the table from method to handler, and its lifecycle (close, fail, release).

Strategy: the connection hands each method of this channel to `on_method` and each whole published message
to `on_content` (the protocol machine assembles basic.publish, header and body frames, checks their sizes,
and passes only close and close-ok to a channel that is closing). The per-message paths (publish, deliver,
ack) are written out by hand with no per-message logging and few calls; everything else dispatches through
a table from method class to handler. Failures are raised as `AMQPError`s; the connection turns them into
channel.close / connection.close and calls `fail` or `release` here.

The handlers live in modules named for what they do, as plain functions taking the channel: publishing
and confirms (channel_publish.py), consumers and basic.get (channel_consumer.py), acks, nacks and recover
(channel_acks.py), transactions (channel_tx.py), exchange and queue methods (channel_topology.py). They
share the channel's state through the attributes below. Prefetch windows (`qos.py`) count the deliveries
of consumers; publisher confirms (`confirms.py`) and transactions (`tx.py`) are bookkeeping objects
created on select.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import CHANNEL_ERROR, COMMAND_INVALID, NOT_FOUND, NOT_IMPLEMENTED
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.amqp.methods import (
    AccessRequest,
    BasicAck,
    BasicCancel,
    BasicConsume,
    BasicGet,
    BasicNack,
    BasicPublish,
    BasicQos,
    BasicRecover,
    BasicRecoverAsync,
    BasicReject,
    ChannelClose,
    ChannelCloseOk,
    ChannelFlow,
    ChannelFlowOk,
    ChannelOpen,
    ConfirmSelect,
    ExchangeBind,
    ExchangeDeclare,
    ExchangeDelete,
    ExchangeUnbind,
    Method,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    QueueUnbind,
    TxCommit,
    TxRollback,
    TxSelect,
)
from ottermq.broker import channel_acks, channel_consumer, channel_topology, channel_tx, reply_to
from ottermq.broker.channel_acks import by_queue, settle, settle_acks, tag_of
from ottermq.broker.channel_consumer import ChannelConsumer, Delivery, new_consumer_tag
from ottermq.broker.channel_publish import HeldPublish, PublishRun, TxPublish, confirm_select, published
from ottermq.broker.channel_tx import release_tx_bytes
from ottermq.broker.confirms import ConfirmTracker, HeldPublishes
from ottermq.broker.message import Message
from ottermq.broker.qos import ChannelQos
from ottermq.broker.reply_to import ReplyQueue
from ottermq.broker.tx import ACK, TxBuffer
from ottermq.broker.unacked import UnackedTracker

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection
    from ottermq.broker.queue import Queue
    from ottermq.broker.stream import StreamLog

# Importable from here as before the handlers moved to their own modules.
__all__ = ["MESSAGE_COUNTERS", "Channel", "ChannelConsumer", "Delivery", "new_consumer_tag"]

# The message counters a channel keeps (attribute "n_" + name), named as RabbitMQ's prometheus plugin names
# its global counters without "rabbitmq_global_messages_" and "_total". `Broker.message_totals` adds them up.
MESSAGE_COUNTERS: Final = (
    "routed",
    "unroutable_dropped",
    "unroutable_returned",
    "confirmed",
    "delivered_consume_auto_ack",
    "delivered_consume_manual_ack",
    "delivered_get_auto_ack",
    "delivered_get_manual_ack",
    "redelivered",
    "acknowledged",
    "get_empty",
)
_COUNTER_ATTRIBUTES: Final = tuple((name, "n_" + name) for name in MESSAGE_COUNTERS)


class Channel:
    """The state of one open channel of a connection."""

    __slots__ = (
        "committing",
        "confirm_flush_pending",
        "confirm_parts",
        "confirms",
        "connection",
        "consumers",
        "deferred_cancels",
        "dispatch_due",
        "guard",
        "held",
        "is_open",
        "last_queue",
        "last_routing",
        "memory",
        "n_acknowledged",
        "n_confirmed",
        "n_delivered_consume_auto_ack",
        "n_delivered_consume_manual_ack",
        "n_delivered_get_auto_ack",
        "n_delivered_get_manual_ack",
        "n_get_empty",
        "n_redelivered",
        "n_routed",
        "n_unroutable_dropped",
        "n_unroutable_returned",
        "number",
        "publish_run",
        "qos",
        "reply",
        "transport",
        "tx",
        "tx_bytes",
        "tx_publishes",
        "tx_streams",
        "unacked",
        "vhost",
    )

    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.transport = connection.transport
        assert connection.vhost is not None and connection.guard is not None
        self.vhost = connection.vhost
        self.guard = connection.guard
        self.number = number
        # True until the channel starts closing (the client's channel.close, ours, or the connection ends):
        # then everything is released, and whatever completes later (the journal) sends nothing.
        self.is_open = True
        self.consumers: dict[str, ChannelConsumer] = {}
        self.unacked: UnackedTracker[Delivery] = UnackedTracker()
        self.qos = ChannelQos()
        # The direct reply-to consumer (reply_to.ReplyQueue), if the channel has one.
        self.reply: ReplyQueue | None = None
        self.confirms: ConfirmTracker | None = None
        self.tx: TxBuffer[TxPublish, Delivery] | None = None
        # A tx.commit waits for the journal: any method but channel.close is an error until then.
        self.committing = False
        self.confirm_flush_pending = False
        # Confirms of publishes to streams still waiting for some of their parts (channel_publish.py).
        self.confirm_parts: dict[int, list[Any]] | None = None
        # Confirmed publishes waiting for the journal before they reach their queues (confirm mode only).
        self.held: HeldPublishes[HeldPublish] | None = None
        # Bytes of the transaction's buffered publishes, counted as held in the memory account.
        self.tx_bytes = 0
        # During tx.commit: its routed publishes, enqueued once the commit's record is durable.
        self.tx_publishes: list[tuple[Message, Sequence[Queue]]] | None = None
        # During tx.commit: (stream log, offset) of its appends to streams; commit-ok waits for them.
        self.tx_streams: list[tuple[StreamLog, int]] = []
        # The queue this channel declared last: an empty queue name in a method means it.
        self.last_queue = ""
        # While this channel deletes a queue: the tags of its own consumers the delete cancelled, told to
        # the client after queue.delete-ok (RabbitMQ's order on the deleting channel).
        self.deferred_cancels: list[str] | None = None
        # True while a dispatch asked for by settled deliveries waits for the end of the input batch.
        self.dispatch_due = False
        self.memory = connection.broker.memory
        # The previous message's (exchange, routing key, properties): a publisher mostly repeats them,
        # and a held message then shares those objects instead of keeping copies of its own.
        self.last_routing: tuple[str, str, bytes] = ("", "", b"")
        # The one stream the last publishes of this input batch went to (channel_publish.PublishRun).
        self.publish_run: PublishRun | None = None
        # Message counters (MESSAGE_COUNTERS): plain ints bumped where the event happens, folded into the
        # broker's totals when the channel ends. Received is routed + unroutable, so it is not kept apart.
        self.n_routed = 0
        self.n_unroutable_dropped = 0
        self.n_unroutable_returned = 0
        self.n_confirmed = 0
        self.n_delivered_consume_auto_ack = 0
        self.n_delivered_consume_manual_ack = 0
        self.n_delivered_get_auto_ack = 0
        self.n_delivered_get_manual_ack = 0
        self.n_redelivered = 0
        self.n_acknowledged = 0
        self.n_get_empty = 0

    def __repr__(self) -> str:
        return f"Channel({self.number}, consumers={len(self.consumers)}, unacked={len(self.unacked)})"

    # -- frames ----------------------------------------------------------------------------------------

    def on_method(self, method: Method) -> None:
        """Handle one method frame of this channel."""
        if not self.is_open:
            self._while_closing(method)
            return
        kind = type(method)
        if self.committing and kind is not ChannelClose:
            raise AMQPConnectionError(
                CHANNEL_ERROR,
                "CHANNEL_ERROR - unexpected command while processing 'tx.commit'",
            )
        if kind is BasicAck:
            settle(self, method.delivery_tag, method.multiple, ACK)  # type: ignore[attr-defined]
            return
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise AMQPConnectionError(COMMAND_INVALID, "COMMAND_INVALID - unimplemented method")
        handler(self, method)

    def on_acks(self, first: BasicAck, acks: list[tuple[int, bool]]) -> None:
        """A basic.ack and the basic.ack frames that followed it on this channel, taken together by the
        machine: handled as `on_method` would handle each in turn. Outside a transaction their deliveries
        are settled together (`settle_acks`: one `apply_settle` and one removal event per queue for the
        run). An error raises at the ack that caused it and the rest go unhandled, as the machine drops
        what a client sends on a channel being closed."""
        if not self.is_open or self.committing or self.tx is not None:
            self.on_method(first)  # drops it while closing; raises while committing
            for delivery_tag, multiple in acks:
                if not self.is_open:
                    return
                self.on_method(BasicAck(delivery_tag, multiple))
            return
        settle_acks(self, [(first.delivery_tag, first.multiple), *acks])

    def on_content(self, method: BasicPublish, properties: bytes, body: bytes) -> None:
        """A whole published message (the machine checked its frames and sizes)."""
        if self.committing:
            raise AMQPConnectionError(
                CHANNEL_ERROR,
                "CHANNEL_ERROR - unexpected command while processing 'tx.commit'",
            )
        published(self, method, properties, body)

    # -- shared by the handlers ------------------------------------------------------------------------

    def queue_name(self, name: str) -> str:
        """An empty queue name means the queue this channel declared last, as in RabbitMQ."""
        if name:
            return name
        if not self.last_queue:
            raise ChannelError(NOT_FOUND, "NOT_FOUND - no previously declared queue")
        return self.last_queue

    def dispatch_all(self) -> None:
        """Let every queue this channel consumes from deliver again (credit or socket came back)."""
        if not self.is_open:
            return
        seen: set[int] = set()
        for consumer in list(self.consumers.values()):
            queue = consumer.queue
            if id(queue) not in seen:
                seen.add(id(queue))
                queue.dispatch()

    def dispatch_soon(self) -> None:
        """`dispatch_all` once the input batch being handled is done: a client acking one delivery at a
        time reopens its window once per ack, and one dispatch then sends them all, not one each."""
        if not self.dispatch_due:
            self.dispatch_due = True
            self.connection.defer(self._dispatch_due)

    def _dispatch_due(self) -> None:
        self.dispatch_due = False
        self.dispatch_all()

    def add_counts(self, totals: dict[str, int]) -> None:
        """Add this channel's message counters to `totals` (keyed by MESSAGE_COUNTERS)."""
        for name, attribute in _COUNTER_ATTRIBUTES:
            totals[name] += getattr(self, attribute)

    def fold_counts(self, totals: dict[str, int]) -> None:
        """Move the counters into `totals` (the broker's, as the channel ends) and into its vhost's
        `message_counts`: totals never go back."""
        per_vhost = self.vhost.message_counts
        for name, attribute in _COUNTER_ATTRIBUTES:
            count = getattr(self, attribute)
            totals[name] += count
            per_vhost[name] = per_vhost.get(name, 0) + count
            setattr(self, attribute, 0)

    # -- channel ---------------------------------------------------------------------------------------

    def _on_open(self, method: ChannelOpen) -> None:
        raise AMQPConnectionError(CHANNEL_ERROR, "CHANNEL_ERROR - second 'channel.open' seen")

    def _on_flow(self, method: ChannelFlow) -> None:
        # RabbitMQ 3.x no longer lets a client pause its deliveries this way (prefetch does that job).
        if not method.active:
            raise AMQPConnectionError(NOT_IMPLEMENTED, "NOT_IMPLEMENTED - active=false")
        self.connection.send_method(self.number, ChannelFlowOk(True))

    def _on_close(self, method: ChannelClose) -> None:
        self.release()
        self.connection.send_method(self.number, ChannelCloseOk())
        self.connection.channel_closed(self.number)

    def _while_closing(self, method: Method) -> None:
        """After our channel.close the machine passes on only the client's close (answered: the two
        crossed) and its close-ok (the end)."""
        if type(method) is ChannelCloseOk:
            self.connection.channel_closed(self.number)
        else:
            self.connection.send_method(self.number, ChannelCloseOk())

    def fail(self, reply_code: int, reply_text: str, class_id: int, method_id: int) -> None:
        """A soft error: release everything and send channel.close; wait for close-ok."""
        if not self.is_open:
            return
        self.release()
        self.connection.send_method(self.number, ChannelClose(reply_code, reply_text, class_id, method_id))

    def release(self) -> None:
        """The channel ends: unacked deliveries go back to their queues (redelivered), consumers go away."""
        if not self.is_open:
            return
        self.is_open = False
        self.connection.broker.churn.channels_closed += 1
        self.fold_counts(self.connection.broker.message_counts)
        self.confirms = None
        for consumer in self.consumers.values():
            consumer.active = False
        reply_to.release(self)
        deliveries = self.unacked.take_all()
        if self.tx is not None:
            # Settled inside an uncommitted transaction: still unacknowledged as far as queues know.
            deliveries.extend(self.tx.rollback())
            release_tx_bytes(self)
            self.tx = None
        for queue, entries in by_queue(sorted(deliveries, key=tag_of)).items():
            queue.requeue(entries)
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer)


_HANDLERS: Final[dict[type[Method], Callable[[Channel, Any], None]]] = {
    BasicNack: channel_acks.nack,
    BasicReject: channel_acks.reject,
    BasicConsume: channel_consumer.consume,
    BasicCancel: channel_consumer.cancel,
    BasicGet: channel_consumer.get,
    BasicQos: channel_consumer.qos,
    BasicRecover: channel_acks.recover,
    BasicRecoverAsync: channel_acks.recover_async,
    ChannelOpen: Channel._on_open,
    ChannelFlow: Channel._on_flow,
    ChannelClose: Channel._on_close,
    ConfirmSelect: confirm_select,
    TxSelect: channel_tx.select,
    TxCommit: channel_tx.commit,
    TxRollback: channel_tx.rollback,
    AccessRequest: channel_topology.access_request,
    ExchangeDeclare: channel_topology.exchange_declare,
    ExchangeDelete: channel_topology.exchange_delete,
    ExchangeBind: channel_topology.exchange_bind,
    ExchangeUnbind: channel_topology.exchange_unbind,
    QueueDeclare: channel_topology.queue_declare,
    QueueBind: channel_topology.queue_bind,
    QueueUnbind: channel_topology.queue_unbind,
    QueuePurge: channel_topology.queue_purge,
    QueueDelete: channel_topology.queue_delete,
}
