"""One AMQP channel: every class-level method, publishes, consumers, acks, confirms, tx.

Strategy: the connection hands each method of this channel to `on_method` and each whole published message
to `on_content` (the protocol machine assembles basic.publish, header and body frames and checks their
sizes); messages are routed through the vhost; the per-message paths (publish, deliver, ack) are written out
by hand with no per-message logging and few calls. Everything else dispatches through a table from
method class to handler. Failures are raised as `AMQPError`s; the connection turns them into
channel.close / connection.close and calls `fail` or `release` here.

Deliveries awaiting an ack live in an `UnackedTracker` as (tag, queue, entry, consumer) tuples;
consumer is None for basic.get. Prefetch windows (`qos.py`) count those of consumers; publisher
confirms (`confirms.py`) and transactions (`tx.py`) are bookkeeping objects created on select.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.constants import (
    CHANNEL_ERROR,
    COMMAND_INVALID,
    INTERNAL_ERROR,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
)
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.amqp.frames import (
    encode_basic_ack,
    encode_basic_nack,
    encode_deliver,
    encode_get_ok,
    encode_return,
)
from ottermq.amqp.methods import (
    AccessRequest,
    AccessRequestOk,
    BasicAck,
    BasicCancel,
    BasicCancelOk,
    BasicConsume,
    BasicConsumeOk,
    BasicGet,
    BasicGetEmpty,
    BasicNack,
    BasicPublish,
    BasicQos,
    BasicQosOk,
    BasicRecover,
    BasicRecoverAsync,
    BasicRecoverOk,
    BasicReject,
    ChannelClose,
    ChannelCloseOk,
    ChannelFlow,
    ChannelFlowOk,
    ChannelOpen,
    ConfirmSelect,
    ConfirmSelectOk,
    ExchangeBind,
    ExchangeBindOk,
    ExchangeDeclare,
    ExchangeDeclareOk,
    ExchangeDelete,
    ExchangeDeleteOk,
    ExchangeUnbind,
    ExchangeUnbindOk,
    Method,
    QueueBind,
    QueueBindOk,
    QueueDeclare,
    QueueDeclareOk,
    QueueDelete,
    QueueDeleteOk,
    QueuePurge,
    QueuePurgeOk,
    QueueUnbind,
    QueueUnbindOk,
    TxCommit,
    TxCommitOk,
    TxRollback,
    TxRollbackOk,
    TxSelect,
    TxSelectOk,
)
from ottermq.amqp.properties import FLAG_USER_ID
from ottermq.broker import exchange_types, publish_hooks, reply_to
from ottermq.broker.apply import Placed
from ottermq.broker.confirms import ConfirmTracker, Held, HeldPublishes
from ottermq.broker.memory import MESSAGE_OVERHEAD
from ottermq.broker.message import Message, QueueEntry
from ottermq.broker.qos import ChannelQos, PrefetchWindow
from ottermq.broker.reply_to import ReplyQueue
from ottermq.broker.tx import ACK, PUBLISH, REJECT_DROP, REJECT_REQUEUE, TxBuffer
from ottermq.broker.unacked import UnackedTracker

if TYPE_CHECKING:
    from ottermq.broker.connection import Connection
    from ottermq.broker.exchange import Exchange
    from ottermq.broker.queue import Queue

# An unacknowledged delivery: (delivery tag, queue, entry, consumer or None for basic.get).
Delivery = tuple[int, "Queue", QueueEntry, "ChannelConsumer | None"]
# A buffered transactional publish: (message, exchange, mandatory).
TxPublish = tuple[Message, "Exchange", bool]
# A confirmed publish held until the journal has it: (its queues' entries, confirm sequence number).
HeldPublish = tuple[list[Placed], int]

_OPEN: Final = 0
_CLOSING: Final = 1  # channel.close sent by us: only close / close-ok are read
_CLOSED: Final = 2

_PUBLISH_IDS: Final = (BasicPublish.CLASS_ID, BasicPublish.METHOD_ID)
_USER_ID_FLAG: Final = FLAG_USER_ID  # in the low octet of the first property-flags word

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
)
_COUNTER_ATTRIBUTES: Final = tuple((name, "n_" + name) for name in MESSAGE_COUNTERS)


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

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        """Send basic.deliver and track the delivery until it is settled."""
        channel = self.channel
        unacked = channel.unacked
        tag = unacked.last_tag = unacked.last_tag + 1
        message = queue.content_of(entry)
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
        if self.no_ack:
            queue.settle((entry,))
            channel.n_delivered_consume_auto_ack += 1
        else:
            unacked.track(tag, (tag, queue, entry, self))
            self.window.outstanding += 1
            channel.qos.shared.outstanding += 1
            channel.n_delivered_consume_manual_ack += 1
        if entry.redelivered:
            channel.n_redelivered += 1

    def cancelled_by_broker(self) -> None:
        """The queue was deleted: forget the consumer, tell a client that asked (basic.cancel)."""
        self.active = False
        self.channel.consumer_cancelled(self)


class Channel:
    """The state of one open channel of a connection."""

    __slots__ = (
        "_committing",
        "_confirm_flush_pending",
        "_deferred_cancels",
        "_held",
        "_last_queue",
        "_last_routing",
        "_memory",
        "_publish",
        "_state",
        "_tx_bytes",
        "_tx_publishes",
        "confirms",
        "connection",
        "consumers",
        "guard",
        "n_acknowledged",
        "n_confirmed",
        "n_delivered_consume_auto_ack",
        "n_delivered_consume_manual_ack",
        "n_delivered_get_auto_ack",
        "n_delivered_get_manual_ack",
        "n_redelivered",
        "n_routed",
        "n_unroutable_dropped",
        "n_unroutable_returned",
        "number",
        "qos",
        "reply",
        "transport",
        "tx",
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
        self._state = _OPEN
        self.consumers: dict[str, ChannelConsumer] = {}
        self.unacked: UnackedTracker[Delivery] = UnackedTracker()
        self.qos = ChannelQos()
        # The direct reply-to consumer (reply_to.ReplyQueue), if the channel has one.
        self.reply: ReplyQueue | None = None
        self.confirms: ConfirmTracker | None = None
        self.tx: TxBuffer[TxPublish, Delivery] | None = None
        self._committing = False
        self._confirm_flush_pending = False
        # Confirmed publishes waiting for the journal before they reach their queues (confirm mode only).
        self._held: HeldPublishes[HeldPublish] | None = None
        # Bytes of the transaction's buffered publishes, counted as held in the memory account.
        self._tx_bytes = 0
        # During tx.commit: its routed publishes, enqueued once the commit's record is durable.
        self._tx_publishes: list[tuple[Message, Sequence[Queue]]] | None = None
        self._last_queue = ""
        # While this channel deletes a queue: the tags of its own consumers the delete cancelled, told to
        # the client after queue.delete-ok (RabbitMQ's order on the deleting channel).
        self._deferred_cancels: list[str] | None = None
        self._publish: BasicPublish | None = None
        self._memory = connection.broker.memory
        # The previous message's (exchange, routing key, properties): a publisher mostly repeats them,
        # and a held message then shares those objects instead of keeping copies of its own.
        self._last_routing: tuple[str, str, bytes] = ("", "", b"")
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

    def __repr__(self) -> str:
        return f"Channel({self.number}, consumers={len(self.consumers)}, unacked={len(self.unacked)})"

    @property
    def is_open(self) -> bool:
        """True until the channel starts closing."""
        return self._state == _OPEN

    # -- frames ----------------------------------------------------------------------------------------

    def on_method(self, method: Method) -> None:
        """Handle one method frame of this channel."""
        if self._state != _OPEN:
            self._while_closing(method)
            return
        kind = type(method)
        if self._committing and kind is not ChannelClose:
            raise AMQPConnectionError(
                CHANNEL_ERROR,
                "CHANNEL_ERROR - unexpected command while processing 'tx.commit'",
            )
        if kind is BasicAck:
            self._settle(method.delivery_tag, method.multiple, ACK)  # type: ignore[attr-defined]
            return
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise AMQPConnectionError(COMMAND_INVALID, "COMMAND_INVALID - unimplemented method")
        handler(self, method)

    def on_content(self, method: BasicPublish, properties: bytes, body: bytes) -> None:
        """A whole published message (the machine checked its frames and sizes)."""
        if self._committing:
            raise AMQPConnectionError(
                CHANNEL_ERROR,
                "CHANNEL_ERROR - unexpected command while processing 'tx.commit'",
            )
        self._publish = method
        self._published(properties, body)

    # -- publish ---------------------------------------------------------------------------------------

    def _published(self, properties: bytes, body: bytes) -> None:
        """A whole message arrived: route it now, or hold it for tx.commit."""
        method = self._publish
        assert method is not None
        if method.exchange not in self.guard.writable:
            self.guard.check_publish(method.exchange)
        exchange = self.vhost.exchange_for_publish(method.exchange)
        last_exchange, last_key, last_properties = self._last_routing
        if (
            method.exchange == last_exchange
            and method.routing_key == last_key
            and properties == last_properties
        ):
            message = Message(last_exchange, last_key, last_properties, body)
        else:
            self._last_routing = (method.exchange, method.routing_key, properties)
            message = Message(method.exchange, method.routing_key, properties, body)
        if len(properties) > 1 and properties[1] & _USER_ID_FLAG:
            # Rare: decode only when the user-id flag is set (the low octet of the first flag word).
            user_id = message.props.user_id
            if user_id is not None and user_id != self.connection.user:
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"PRECONDITION_FAILED - user_id property set to '{user_id}' "
                    f"but authenticated user was '{self.connection.user}'",
                    *_PUBLISH_IDS,
                )
        tx = self.tx
        if tx is not None:
            tx.publish((message, exchange, method.mandatory))
            # Counted as held until the commit routes it (the content store counts it then) or a rollback
            # drops it; see memory.py.
            size = message.body_size + MESSAGE_OVERHEAD
            self._tx_bytes += size
            self._memory.held_bytes += size
            return
        self._route(message, exchange, method.mandatory)

    def _route(self, message: Message, exchange: Exchange, mandatory: bool) -> int:
        """Route and enqueue one message; returns the journal position it waits for (0: none)."""
        properties = message.properties
        if properties and properties[0] & publish_hooks.SPECIAL_FLAGS:
            # headers, reply_to or expiration: CC/BCC, direct reply-to and TTL need the properties read.
            message, queues = publish_hooks.route(self, exchange, message)
        else:
            queues = self.vhost.route(exchange, message.routing_key, message)
        confirms = self.confirms
        seq = confirms.publish() if confirms is not None else 0
        if queues:
            self.n_routed += 1
            if seq:
                return self._publish_confirmed(message, queues, seq)
            committing = self._tx_publishes
            if committing is not None:
                committing.append((message, queues))  # logged with the commit, enqueued once durable
                return 0
            # No confirm: a persistent message reaching a durable queue is logged (and named) before it
            # is enqueued, and goes to its queues at once (without a journal it is at most once).
            return self.vhost.publish_now(message, queues)
        if mandatory:
            self.n_unroutable_returned += 1
            connection = self.connection
            connection.sent = True
            self.transport.write(
                encode_return(
                    self.number,
                    NO_ROUTE,
                    "NO_ROUTE",
                    message.exchange,
                    message.routing_key,
                    message.properties,
                    message.body,
                    connection.frame_max,
                )
            )
        else:
            self.n_unroutable_dropped += 1
        if seq:
            self._confirmed(seq)
        return 0

    def _publish_confirmed(self, message: Message, queues: Sequence[Queue], seq: int) -> int:
        """A publish on a confirm channel: it reaches its queues only once the journal has it, so a
        nacked message is never enqueued nor delivered (see `HeldPublishes`). The journal position it
        waits for (0: none, -1: refused and nacked)."""
        vhost = self.vhost
        position, placed = vhost.publish(message, queues)
        if position < 0:
            # The journal refuses (failed, or suspended by a full disk): nothing is enqueued.
            vhost.publish_nacked(placed)
            self._confirmed(seq, False)
            return -1
        held = self._held
        if not position:
            if held is None or not len(held):
                self._confirmed(seq, self._enqueue_all(placed))
            else:
                held.hold((placed, seq), stored=True)  # behind earlier publishes, in order
            return 0
        if held is None:
            held = self._held = HeldPublishes()
        waiting = held.hold((placed, seq))
        self.connection.broker.journal.when_durable(
            position, partial(self._journaled, waiting, True), partial(self._journaled, waiting, False)
        )
        return position

    def _journaled(self, waiting: Held[HeldPublish], stored: bool) -> None:
        """A held publish is durable (or never will be): release what may go now, in publish order. Runs
        after the channel closed too: a message published and not nacked still reaches its queues."""
        held = self._held
        assert held is not None
        for (placed, seq), ok in held.settle(waiting, stored):
            if ok:
                self._confirmed(seq, self._enqueue_all(placed))
            else:
                self.vhost.publish_nacked(placed)
                self._confirmed(seq, False)

    def _enqueue_all(self, placed: list[Placed]) -> bool:
        """Make a confirmed publish ready in all its queues, or in none when one of them refuses it (a
        full queue with x-overflow reject-publish): a nacked message is delivered nowhere. True if
        enqueued."""
        refused = False
        for queue, entry in placed:
            if queue.features is not None and not queue.deleted and queue.refuses(entry.size):
                refused = True
                break
        if not refused:
            enqueued = True
            for queue, entry in placed:
                if queue.deleted:
                    queue.contents.release(entry.msg_id)  # 0 for a logged one: the delete gave it back
                elif not queue.enqueue(entry):
                    enqueued = False
            return enqueued
        for queue, entry in placed:
            if queue.deleted:
                queue.contents.release(entry.msg_id)
            elif queue.features is not None and queue.refuses(entry.size):
                queue.enqueue(entry)  # refused: dead-lettered by reject-publish-dlx, its removal logged
            else:
                self.vhost.publish_nacked(((queue, entry),))
        return False

    def _confirmed(self, seq: int, ack: bool = True) -> None:
        confirms = self.confirms
        if confirms is None or self._state != _OPEN:
            return
        confirms.settle(seq, ack)
        if ack:
            # Counted per message as it is settled: acks may go out of order (a transient message
            # before an earlier persistent one), and a Prometheus counter must never step back.
            self.n_confirmed += 1
        if not self._confirm_flush_pending:
            self._confirm_flush_pending = True
            self.connection.defer(self._flush_confirms)

    def _flush_confirms(self) -> None:
        """Send the acks released since the last flush (one frame per run)."""
        self._confirm_flush_pending = False
        confirms = self.confirms
        if confirms is None or self._state != _OPEN:
            return
        number = self.number
        for tag, multiple, ack in confirms.drain():
            self.connection.write(
                encode_basic_ack(number, tag, multiple)
                if ack
                else encode_basic_nack(number, tag, multiple, False)
            )

    # -- acknowledgements ------------------------------------------------------------------------------

    def _settle(self, tag: int, multiple: bool, kind: int) -> None:
        deliveries = self.unacked.settle(tag, multiple)
        tx = self.tx
        if tx is not None:
            tx.settle(kind, deliveries)
            return
        self._apply_settle(kind, deliveries)

    def _apply_settle(self, kind: int, deliveries: list[Delivery]) -> None:
        if kind == ACK:
            self.n_acknowledged += len(deliveries)
        if len(deliveries) == 1:
            _, queue, entry, _ = deliveries[0]
            if kind == REJECT_REQUEUE:
                queue.requeue((entry,))
            else:
                queue.settle((entry,), "ack" if kind == ACK else "reject")
        else:
            for queue, entries in _by_queue(deliveries).items():
                if kind == REJECT_REQUEUE:
                    queue.requeue(entries)
                else:
                    queue.settle(entries, "ack" if kind == ACK else "reject")
        self._release_credit(deliveries)

    def _release_credit(self, deliveries: Iterable[Delivery]) -> None:
        """Give back prefetch credit for settled deliveries; dispatch again if a window reopened."""
        shared = self.qos.shared
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
        if reopened and self._state == _OPEN:
            self.dispatch_all()

    def dispatch_all(self) -> None:
        """Let every queue this channel consumes from deliver again (credit or socket came back)."""
        if self._state != _OPEN:
            return
        seen: set[int] = set()
        for consumer in list(self.consumers.values()):
            queue = consumer.queue
            if id(queue) not in seen:
                seen.add(id(queue))
                queue.dispatch()

    def _on_nack(self, method: BasicNack) -> None:
        self._settle(method.delivery_tag, method.multiple, REJECT_REQUEUE if method.requeue else REJECT_DROP)

    def _on_reject(self, method: BasicReject) -> None:
        self._settle(method.delivery_tag, False, REJECT_REQUEUE if method.requeue else REJECT_DROP)

    def _recover(self, requeue: bool) -> None:
        if not requeue:
            raise AMQPConnectionError(NOT_IMPLEMENTED, "NOT_IMPLEMENTED - requeue=false")
        deliveries = self.unacked.take_all()
        if deliveries:
            self._apply_settle(REJECT_REQUEUE, deliveries)

    def _on_recover_async(self, method: BasicRecoverAsync) -> None:
        self._recover(method.requeue)

    def _on_recover(self, method: BasicRecover) -> None:
        self._recover(method.requeue)
        self.connection.send_method(self.number, BasicRecoverOk())

    # -- consumers -------------------------------------------------------------------------------------

    def _queue_name(self, name: str) -> str:
        """An empty queue name means the queue this channel declared last, as in RabbitMQ."""
        if name:
            return name
        if not self._last_queue:
            raise ChannelError(NOT_FOUND, "NOT_FOUND - no previously declared queue")
        return self._last_queue

    def _on_consume(self, method: BasicConsume) -> None:
        tag = method.consumer_tag or new_consumer_tag()
        if method.queue == reply_to.REPLY_QUEUE:
            reply_to.consume(self, method, tag)
            return
        if tag in self.consumers:
            raise AMQPConnectionError(NOT_ALLOWED, f"NOT_ALLOWED - attempt to reuse consumer tag '{tag}'")
        name = self._queue_name(method.queue)
        self.guard.check_method(method, name)
        queue = self.vhost.lookup_queue(name, self.connection)
        arguments = method.arguments or {}
        priority = arguments.get("x-priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - invalid arg 'x-priority' for {queue.resource}",
            )
        consumer = ChannelConsumer(
            self,
            tag,
            queue,
            method.no_ack,
            method.exclusive,
            priority,
            self.qos.consumer_prefetch,
            arguments,
        )
        queue.add_consumer(consumer)
        self.consumers[tag] = consumer
        if not method.nowait:
            self.connection.send_method(self.number, BasicConsumeOk(tag))
        consumer.active = True
        queue.dispatch()

    def _on_cancel(self, method: BasicCancel) -> None:
        consumer = self.consumers.pop(method.consumer_tag, None)
        if consumer is None and self.reply is not None:
            reply_to.cancel(self, method.consumer_tag)
        if consumer is not None:
            consumer.active = False
            consumer.queue.remove_consumer(consumer)
        if not method.nowait:
            self.connection.send_method(self.number, BasicCancelOk(method.consumer_tag))

    def consumer_cancelled(self, consumer: ChannelConsumer) -> None:
        """The broker ended a consumer (queue deleted): basic.cancel if the client asked for it."""
        if self.consumers.get(consumer.tag) is consumer:
            del self.consumers[consumer.tag]
            if self._deferred_cancels is not None:
                self._deferred_cancels.append(consumer.tag)
            elif self._state == _OPEN and self.connection.consumer_cancel_notify:
                self.connection.send_method(self.number, BasicCancel(consumer.tag, True))

    def _on_get(self, method: BasicGet) -> None:
        name = self._queue_name(method.queue)
        self.guard.check_method(method, name)
        queue = self.vhost.lookup_queue(name, self.connection)
        entry = queue.get()
        if entry is None:
            self.connection.send_method(self.number, BasicGetEmpty())
            return
        unacked = self.unacked
        tag = unacked.next_tag()
        message = queue.content_of(entry)
        self.connection.write(
            encode_get_ok(
                self.number,
                tag,
                entry.redelivered,
                message.exchange,
                message.routing_key,
                queue.ready_count,
                message.properties,
                message.body,
                self.connection.frame_max,
            )
        )
        if method.no_ack:
            queue.settle((entry,))
            self.n_delivered_get_auto_ack += 1
        else:
            unacked.track(tag, (tag, queue, entry, None))
            self.n_delivered_get_manual_ack += 1
        if entry.redelivered:
            self.n_redelivered += 1

    def _on_qos(self, method: BasicQos) -> None:
        self.qos.apply(method.prefetch_size, method.prefetch_count, method.global_qos)
        self.connection.send_method(self.number, BasicQosOk())
        self.dispatch_all()

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
        """After our channel.close only close (answered) and close-ok (the end) matter."""
        kind = type(method)
        if kind is ChannelCloseOk:
            self._state = _CLOSED
            self.connection.channel_closed(self.number)
        elif kind is ChannelClose:
            self.connection.send_method(self.number, ChannelCloseOk())

    def fail(self, reply_code: int, reply_text: str, class_id: int, method_id: int) -> None:
        """A soft error: release everything and send channel.close; wait for close-ok."""
        if self._state != _OPEN:
            return
        self.release()
        self._state = _CLOSING
        self.connection.send_method(self.number, ChannelClose(reply_code, reply_text, class_id, method_id))

    def release(self) -> None:
        """The channel ends: unacked deliveries go back to their queues (redelivered), consumers go away."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self.fold_counts(self.connection.broker.message_counts)
        self._publish = None
        self.confirms = None
        for consumer in self.consumers.values():
            consumer.active = False
        reply_to.release(self)
        deliveries = self.unacked.take_all()
        if self.tx is not None:
            # Settled inside an uncommitted transaction: still unacknowledged as far as queues know.
            deliveries.extend(self.tx.rollback())
            self._release_tx_bytes()
            self.tx = None
        for queue, entries in _by_queue(sorted(deliveries, key=_tag_of)).items():
            queue.requeue(entries)
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer)

    def add_counts(self, totals: dict[str, int]) -> None:
        """Add this channel's message counters to `totals` (keyed by MESSAGE_COUNTERS)."""
        for name, attribute in _COUNTER_ATTRIBUTES:
            totals[name] += getattr(self, attribute)

    def fold_counts(self, totals: dict[str, int]) -> None:
        """Move the counters into `totals` (the broker's, as the channel ends): totals never go back."""
        for name, attribute in _COUNTER_ATTRIBUTES:
            totals[name] += getattr(self, attribute)
            setattr(self, attribute, 0)

    # -- confirm and tx --------------------------------------------------------------------------------

    def _on_confirm_select(self, method: ConfirmSelect) -> None:
        if self.tx is not None:
            raise ChannelError(
                PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
            )
        if self.confirms is None:
            self.confirms = ConfirmTracker()
        if not method.nowait:
            self.connection.send_method(self.number, ConfirmSelectOk())

    def _on_tx_select(self, method: TxSelect) -> None:
        if self.confirms is not None:
            raise ChannelError(
                PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
            )
        if self.tx is None:
            self.tx = TxBuffer()
        self.connection.send_method(self.number, TxSelectOk())

    def _on_tx_commit(self, method: TxCommit) -> None:
        tx = self.tx
        if tx is None:
            raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional")
        vhost = self.vhost
        # Every publish and removal of the commit goes into one journal record (all or nothing). Its
        # publishes reach their queues once that record is durable: a commit that fails is not delivered.
        publishes: list[tuple[Message, Sequence[Queue]]] = []
        self._tx_publishes = publishes
        self._release_tx_bytes()
        vhost.begin_tx()
        try:
            for op in tx.commit():
                if op.kind == PUBLISH:
                    assert op.publish is not None
                    message, exchange, mandatory = op.publish
                    self._route(message, exchange, mandatory)
                elif op.deliveries:
                    self._apply_settle(op.kind, op.deliveries)
        finally:
            self._tx_publishes = None
            position, placed = vhost.end_tx(publishes)
        if position:
            self._committing = True
            self.connection.broker.journal.when_durable(
                position, partial(self._commit_durable, placed), partial(self._commit_failed, placed)
            )
        else:
            self._enqueue_committed(placed)
            self.connection.send_method(self.number, TxCommitOk())

    @staticmethod
    def _enqueue_committed(placed: list[list[Placed]]) -> None:
        for entries in placed:
            for queue, entry in entries:
                if queue.deleted:
                    queue.contents.release(entry.msg_id)  # 0 for a logged one: the delete gave it back
                else:
                    queue.enqueue(entry)

    def _commit_durable(self, placed: list[list[Placed]]) -> None:
        self._committing = False
        self._enqueue_committed(placed)  # also when the channel closed meanwhile: they are committed
        if self._state == _OPEN:
            self.connection.send_method(self.number, TxCommitOk())

    def _commit_failed(self, placed: list[list[Placed]]) -> None:
        self._committing = False
        for entries in placed:
            self.vhost.publish_nacked(entries)
        self.fail(
            INTERNAL_ERROR,
            "INTERNAL_ERROR - the journal failed: the transaction is not durable",
            TxCommit.CLASS_ID,
            TxCommit.METHOD_ID,
        )

    def _release_tx_bytes(self) -> None:
        """The buffered publishes leave the transaction's buffer (committed, rolled back, or the channel
        ends): they no longer count as held by it."""
        self._memory.held_bytes -= self._tx_bytes
        self._tx_bytes = 0

    def _reply_when_durable(self, reply: Method, before: int) -> None:
        """Send `reply`, but if the operation journaled anything (its first position would have been
        `before`), only once that is on disk (declare-ok of durable entities); 541 if the journal fails."""
        journal = self.connection.broker.journal
        position = journal.next_position - 1
        if position < before or position <= journal.durable_position:
            self.connection.send_method(self.number, reply)
            return
        journal.when_durable(
            position,
            partial(self._send_if_open, reply),
            partial(self.fail, INTERNAL_ERROR, "INTERNAL_ERROR - the journal failed", 0, 0),
        )

    def _send_if_open(self, reply: Method) -> None:
        if self._state == _OPEN:
            self.connection.send_method(self.number, reply)

    def _on_tx_rollback(self, method: TxRollback) -> None:
        tx = self.tx
        if tx is None:
            raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - channel is not transactional")
        restored = tx.rollback()
        self._release_tx_bytes()
        if restored:
            self.unacked.restore((delivery[0], delivery) for delivery in restored)
        self.connection.send_method(self.number, TxRollbackOk())

    # -- exchanges and queues --------------------------------------------------------------------------

    def _on_access_request(self, method: AccessRequest) -> None:
        self.connection.send_method(self.number, AccessRequestOk(1))

    def _on_exchange_declare(self, method: ExchangeDeclare) -> None:
        before = self.connection.broker.journal.next_position
        if not method.passive and method.exchange:
            exchange_types.lookup(method.type).check()  # 503 for an unknown type comes before 403
            self.guard.check_exchange_declare(method, method.exchange in self.vhost.exchanges)
        self.vhost.declare_exchange(
            method.exchange,
            method.type,
            passive=method.passive,
            durable=method.durable,
            auto_delete=method.auto_delete,
            internal=method.internal,
            arguments=method.arguments or {},
        )
        if not method.nowait:
            self._reply_when_durable(ExchangeDeclareOk(), before)

    def _on_exchange_delete(self, method: ExchangeDelete) -> None:
        self.guard.check_method(method)
        self.vhost.delete_exchange(method.exchange, if_unused=method.if_unused)
        if not method.nowait:
            self.connection.send_method(self.number, ExchangeDeleteOk())

    def _on_exchange_bind(self, method: ExchangeBind) -> None:
        before = self.connection.broker.journal.next_position
        self.guard.check_method(method)
        self.vhost.bind_exchange(
            method.destination, method.source, method.routing_key, method.arguments or {}
        )
        if not method.nowait:
            self._reply_when_durable(ExchangeBindOk(), before)

    def _on_exchange_unbind(self, method: ExchangeUnbind) -> None:
        self.guard.check_method(method)
        self.vhost.unbind_exchange(
            method.destination, method.source, method.routing_key, method.arguments or {}
        )
        if not method.nowait:
            self.connection.send_method(self.number, ExchangeUnbindOk())

    def _on_queue_declare(self, method: QueueDeclare) -> None:
        before = self.connection.broker.journal.next_position
        queue = self.vhost.declare_queue(
            method.queue,
            passive=method.passive,
            durable=method.durable,
            exclusive=method.exclusive,
            auto_delete=method.auto_delete,
            arguments=method.arguments or {},
            owner=self.connection,
            check=self.guard.queue_declare_check(method.arguments or {}),
        )
        self._last_queue = queue.name
        if not method.nowait:
            self._reply_when_durable(
                QueueDeclareOk(queue.name, queue.ready_count, queue.consumer_count), before
            )

    def _on_queue_bind(self, method: QueueBind) -> None:
        before = self.connection.broker.journal.next_position
        routing_key = method.routing_key
        if not method.queue and not routing_key:
            routing_key = self._queue_name("")
        self.guard.check_method(method, self._queue_name(method.queue))
        self.vhost.bind_queue(
            self._queue_name(method.queue),
            method.exchange,
            routing_key,
            method.arguments or {},
            self.connection,
        )
        if not method.nowait:
            self._reply_when_durable(QueueBindOk(), before)

    def _on_queue_unbind(self, method: QueueUnbind) -> None:
        routing_key = method.routing_key
        if not method.queue and not routing_key:
            routing_key = self._queue_name("")
        self.guard.check_method(method, self._queue_name(method.queue))
        self.vhost.unbind_queue(
            self._queue_name(method.queue),
            method.exchange,
            routing_key,
            method.arguments or {},
            self.connection,
        )
        self.connection.send_method(self.number, QueueUnbindOk())

    def _on_queue_purge(self, method: QueuePurge) -> None:
        name = self._queue_name(method.queue)
        self.guard.check_method(method, name)
        count = self.vhost.purge_queue(name, self.connection)
        if not method.nowait:
            self.connection.send_method(self.number, QueuePurgeOk(count))

    def _on_queue_delete(self, method: QueueDelete) -> None:
        name = self._queue_name(method.queue)
        self.guard.check_method(method, name)
        # RabbitMQ answers queue.delete-ok before the deleting channel hears of its own consumers'
        # cancellation (other channels are told at once); clients' test suites (kombu) rely on it.
        cancelled: list[str] = []
        self._deferred_cancels = cancelled
        try:
            count = self.vhost.delete_queue(
                name,
                if_unused=method.if_unused,
                if_empty=method.if_empty,
                owner=self.connection,
            )
            if not method.nowait:
                self.connection.send_method(self.number, QueueDeleteOk(count))
        finally:
            self._deferred_cancels = None
            if cancelled and self._state == _OPEN and self.connection.consumer_cancel_notify:
                for tag in cancelled:
                    self.connection.send_method(self.number, BasicCancel(tag, True))


def _tag_of(delivery: Delivery) -> int:
    return delivery[0]


def _by_queue(deliveries: Iterable[Delivery]) -> dict[Queue, list[QueueEntry]]:
    """Entries grouped by their queue, each group in delivery order."""
    grouped: dict[Queue, list[QueueEntry]] = {}
    for _, queue, entry, _ in deliveries:
        entries = grouped.get(queue)
        if entries is None:
            grouped[queue] = [entry]
        else:
            entries.append(entry)
    return grouped


_HANDLERS: Final[dict[type[Method], Callable[[Channel, Any], None]]] = {
    BasicNack: Channel._on_nack,
    BasicReject: Channel._on_reject,
    BasicConsume: Channel._on_consume,
    BasicCancel: Channel._on_cancel,
    BasicGet: Channel._on_get,
    BasicQos: Channel._on_qos,
    BasicRecover: Channel._on_recover,
    BasicRecoverAsync: Channel._on_recover_async,
    ChannelOpen: Channel._on_open,
    ChannelFlow: Channel._on_flow,
    ChannelClose: Channel._on_close,
    ConfirmSelect: Channel._on_confirm_select,
    TxSelect: Channel._on_tx_select,
    TxCommit: Channel._on_tx_commit,
    TxRollback: Channel._on_tx_rollback,
    AccessRequest: Channel._on_access_request,
    ExchangeDeclare: Channel._on_exchange_declare,
    ExchangeDelete: Channel._on_exchange_delete,
    ExchangeBind: Channel._on_exchange_bind,
    ExchangeUnbind: Channel._on_exchange_unbind,
    QueueDeclare: Channel._on_queue_declare,
    QueueBind: Channel._on_queue_bind,
    QueueUnbind: Channel._on_queue_unbind,
    QueuePurge: Channel._on_queue_purge,
    QueueDelete: Channel._on_queue_delete,
}
