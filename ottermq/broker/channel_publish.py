"""Publishing on a channel: a whole message is routed, returned or dropped, and confirmed in confirm mode.

Strategy: `published` runs once per message (the protocol machine assembled basic.publish, header and
body); it and `route` are written out by hand with no per-message logging and few calls. In a transaction
the message is held by the channel's `TxBuffer` until tx.commit routes it (channel_tx.py). On a confirm
channel (confirm.select) every publish gets a sequence number (`ConfirmTracker`); a message the journal
must write first is held (`HeldPublishes`) and reaches its queues only once the journal has it, in
publish order, so a nacked message is never enqueued nor delivered. Acks go out once per event-loop run
(`flush_confirms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Final

from ottermq.amqp.constants import INTERNAL_ERROR, NO_ROUTE, PRECONDITION_FAILED
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.amqp.frames import encode_basic_ack, encode_basic_nack, encode_return
from ottermq.amqp.methods import BasicPublish, ConfirmSelect, ConfirmSelectOk
from ottermq.amqp.properties import FLAG_USER_ID
from ottermq.broker import publish_hooks
from ottermq.broker.access import WRITE
from ottermq.broker.apply import Placed
from ottermq.broker.confirms import ConfirmTracker, Held, HeldPublishes
from ottermq.broker.memory import MESSAGE_OVERHEAD
from ottermq.broker.message import Message
from ottermq.broker.stream import StreamFailed, StreamQueue, now_ms

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel
    from ottermq.broker.exchange import Exchange
    from ottermq.broker.queue import Queue

# A buffered transactional publish: (message, exchange, mandatory).
TxPublish = tuple[Message, "Exchange", bool]
# A confirmed publish held until the journal has it: (its queues' entries, confirm sequence number).
HeldPublish = tuple[list[Placed], int]

_PUBLISH_IDS: Final = (BasicPublish.CLASS_ID, BasicPublish.METHOD_ID)
_USER_ID_FLAG: Final = FLAG_USER_ID  # in the low octet of the first property-flags word
# Properties a publish is routed by (publish_hooks.SPECIAL_FLAGS, in the high octet): no publish run then.
_RUN_REFUSED: Final = publish_hooks.SPECIAL_FLAGS


class PublishRun:
    """A channel's publishes of one input batch that go where the first went: one stream, or queues none
    of which is a stream.

    The first is routed as any publish; while the connection's `publish_epoch` stays the same (no method
    but basic.ack was handled since, on any channel: the topology, permissions and the channel's modes
    are those it was routed with), the next ones with the same exchange and routing key skip the checks
    and the routing, unless their properties are read on the way (`_RUN_REFUSED`: headers, reply-to,
    expiration, user-id). To queues, each then takes the rest of `route`'s way
    (`_route_run`). To a stream, each is appended straight to its log (`_append_run`), all with one
    timestamp, and their confirms, contiguous sequence numbers, wait for the log as one range,
    registered when the run ends (`end_run`): the input batch handled, a gap in the numbers or an append
    refused. (Every exchange type routes by bindings, routing key and headers alone: exchange_types.py.)"""

    __slots__ = (
        "epoch",
        "exchange",
        "exchange_name",
        "first_seq",
        "last_offset",
        "last_seq",
        "queues",
        "routing_key",
        "stream",
        "timestamp",
    )

    def __init__(
        self,
        epoch: int,
        exchange: Exchange,
        message: Message,
        stream: StreamQueue | None,
        queues: Sequence[Queue],
        timestamp: int,
    ) -> None:
        self.epoch = epoch
        self.exchange = exchange
        self.exchange_name = message.exchange
        self.routing_key = message.routing_key
        self.stream = stream  # the one stream, or None: `queues`
        self.queues = queues
        self.timestamp = timestamp
        self.first_seq = 0  # the confirms waiting in this run: first_seq..last_seq (0: none)
        self.last_seq = 0
        self.last_offset = 0


def published(channel: Channel, method: BasicPublish, properties: bytes, body: bytes) -> None:
    """A whole message arrived: route it now, or hold it for tx.commit."""
    run = channel.publish_run
    if (
        run is not None
        and run.epoch == channel.connection.publish_epoch
        and method.routing_key == run.routing_key
        and method.exchange == run.exchange_name
        and not properties[0] & _RUN_REFUSED  # (the machine gives at least the two flag octets)
        and not (len(properties) > 1 and properties[1] & _USER_ID_FLAG)
    ):
        if run.stream is not None:
            _append_run(channel, run, properties, body)
        else:
            _route_run(channel, run, properties, body)
        return
    guard = channel.guard
    checked = method.exchange in guard.writable
    if not checked:
        guard.check_publish(method.exchange)
    exchange = channel.vhost.exchange_for_publish(method.exchange)
    if not checked:
        guard.check_topic(WRITE, exchange, method.routing_key)  # after lookup and internal, as RabbitMQ
    last_exchange, last_key, last_properties = channel.last_routing
    if method.exchange == last_exchange and method.routing_key == last_key and properties == last_properties:
        message = Message(last_exchange, last_key, last_properties, body)
    else:
        channel.last_routing = (method.exchange, method.routing_key, properties)
        message = Message(method.exchange, method.routing_key, properties, body)
    if len(properties) > 1 and properties[1] & _USER_ID_FLAG:
        # Rare: decode only when the user-id flag is set (the low octet of the first flag word).
        user_id = message.props.user_id
        if user_id is not None and user_id != channel.connection.user:
            raise ChannelError(
                PRECONDITION_FAILED,
                f"PRECONDITION_FAILED - user_id property set to '{user_id}' "
                f"but authenticated user was '{channel.connection.user}'",
                *_PUBLISH_IDS,
            )
    tx = channel.tx
    if tx is not None:
        tx.publish((message, exchange, method.mandatory))
        # Counted as held until the commit routes it (the content store counts it then) or a rollback
        # drops it; see memory.py.
        size = message.body_size + MESSAGE_OVERHEAD
        channel.tx_bytes += size
        channel.memory.held_bytes += size
        return
    route(channel, message, exchange, method.mandatory)


def route(channel: Channel, message: Message, exchange: Exchange, mandatory: bool) -> int:
    """Route and enqueue one message; returns the journal position it waits for (0: none)."""
    properties = message.properties
    hooked = properties and properties[0] & publish_hooks.SPECIAL_FLAGS
    if hooked:
        # headers, reply_to or expiration: CC/BCC, direct reply-to and TTL need the properties read.
        message, queues = publish_hooks.route(channel, exchange, message)
    else:
        queues = channel.vhost.route(exchange, message.routing_key, message)
    confirms = channel.confirms
    seq = confirms.publish() if confirms is not None else 0
    stats = exchange.stats
    stats.publish_in += 1
    if queues:
        channel.n_routed += 1
        stats.publish_out += len(queues)
        # Whether the next publishes like this one may go the same way unrouted (PublishRun).
        runs = not hooked and channel.tx is None and channel.tx_publishes is None
        if channel.vhost.streams_declared:
            if len(queues) == 1:
                stream = queues[0]
                if isinstance(stream, StreamQueue):
                    # The common case (one stream): no lists, the confirm straight from its log.
                    _append_to_stream(channel, message, stream, seq)
                    if runs:
                        _start_run(channel, exchange, message, stream, queues)
                    return 0
            elif any(isinstance(queue, StreamQueue) for queue in queues):
                queues = _append_to_streams(channel, message, queues, seq)
                runs = False
                if not queues:
                    return 0
        if runs:
            _start_run(channel, exchange, message, None, queues)
        return _to_queues(channel, message, queues, seq)
    if mandatory:
        channel.n_unroutable_returned += 1
        connection = channel.connection
        connection.sent = True
        channel.transport.write(
            encode_return(
                channel.number,
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
        channel.n_unroutable_dropped += 1
    if seq:
        confirmed(channel, seq)
    return 0


def _to_queues(channel: Channel, message: Message, queues: Sequence[Queue], seq: int) -> int:
    """A routed message (no stream among `queues`) on its way to them: held for the journal on a confirm
    channel, with the commit in tx.commit, else now. The journal position it waits for (0: none)."""
    if seq:
        return _publish_confirmed(channel, message, queues, seq)
    committing = channel.tx_publishes
    if committing is not None:
        committing.append((message, queues))  # logged with the commit, enqueued once durable
        return 0
    # No confirm: a persistent message reaching a durable queue is logged (and named) before it
    # is enqueued, and goes to its queues at once (without a journal it is at most once).
    return channel.vhost.publish_now(message, queues)


def _append_to_streams(channel: Channel, message: Message, queues: Sequence[Queue], seq: int) -> list[Queue]:
    """Append `message` to the streams among `queues` (every message, persistent or not, as RabbitMQ);
    the other queues. On a confirm channel the confirm waits for each stream's log to have it durable
    (and for the other queues' journal, counted as one more part: `confirmed` settles at the last)."""
    others = [queue for queue in queues if not isinstance(queue, StreamQueue)]
    streams = [queue for queue in queues if isinstance(queue, StreamQueue)]
    if seq and (others or len(streams) > 1):  # one part only: its outcome is the confirm's
        parts = channel.confirm_parts
        if parts is None:
            parts = channel.confirm_parts = {}
        parts[seq] = [len(streams) + (1 if others else 0), True]
    for stream in streams:
        try:
            offset = stream.append(message)
        except StreamFailed as exc:
            if not seq:
                # As the main journal refuses a durable change it cannot log.
                raise AMQPConnectionError(
                    INTERNAL_ERROR, f"INTERNAL_ERROR - {stream.resource}: {exc}"
                ) from None
            confirmed(channel, seq, False)  # this part is nacked (the publish with it)
            continue
        if seq:
            stream.log.when_durable(offset, partial(confirmed, channel, seq))  # (ok) is the ack
        elif channel.tx_publishes is not None:
            channel.tx_streams.append((stream.log, offset))  # tx.commit-ok waits for it
    return others


def _append_to_stream(channel: Channel, message: Message, stream: StreamQueue, seq: int) -> None:
    """`_append_to_streams` of a publish routed to one stream only."""
    try:
        offset = stream.append(message)
    except StreamFailed as exc:
        if not seq:
            raise AMQPConnectionError(INTERNAL_ERROR, f"INTERNAL_ERROR - {stream.resource}: {exc}") from None
        confirmed(channel, seq, False)
        return
    if seq:
        stream.log.when_durable(offset, partial(confirmed, channel, seq))  # (ok) is the ack
    elif channel.tx_publishes is not None:
        channel.tx_streams.append((stream.log, offset))  # tx.commit-ok waits for it


def _start_run(
    channel: Channel,
    exchange: Exchange,
    message: Message,
    stream: StreamQueue | None,
    queues: Sequence[Queue],
) -> None:
    """The next publishes like `message` in this input batch go straight to `stream`, or to `queues`
    (PublishRun)."""
    if channel.publish_run is not None:
        end_run(channel)
    epoch = channel.connection.publish_epoch
    channel.publish_run = PublishRun(epoch, exchange, message, stream, queues, now_ms() if stream else 0)


def _route_run(channel: Channel, run: PublishRun, properties: bytes, body: bytes) -> None:
    """A publish of `run` to its queues: the rest of what `route` does for it."""
    message = Message(run.exchange_name, run.routing_key, properties, body)
    queues = run.queues
    stats = run.exchange.stats
    stats.publish_in += 1
    stats.publish_out += len(queues)
    channel.n_routed += 1
    confirms = channel.confirms
    _to_queues(channel, message, queues, confirms.publish() if confirms is not None else 0)


def _append_run(channel: Channel, run: PublishRun, properties: bytes, body: bytes) -> None:
    """A publish of `run` to its stream: what `route` does for it, without routing it again."""
    stream = run.stream
    assert stream is not None
    confirms = channel.confirms
    seq = confirms.publish() if confirms is not None else 0
    if seq and run.first_seq and seq != run.last_seq + 1:
        end_run(channel, keep=True)  # another publish took a number between: a new range
    try:
        offset = stream.log.append(run.exchange_name, run.routing_key, properties, body, run.timestamp)
    except StreamFailed as exc:
        end_run(channel)
        if not seq:
            raise AMQPConnectionError(INTERNAL_ERROR, f"INTERNAL_ERROR - {stream.resource}: {exc}") from None
        confirmed(channel, seq, False)
        return
    stream.stats.publish += 1
    stats = run.exchange.stats
    stats.publish_in += 1
    stats.publish_out += 1
    channel.n_routed += 1
    if seq:
        if not run.first_seq:
            run.first_seq = seq
            channel.connection.defer(partial(end_run, channel, True))
        run.last_seq = seq
        run.last_offset = offset


def end_run(channel: Channel, keep: bool = False) -> None:
    """Register the run's waiting confirms with the stream's log (one callback for the range); the run
    itself ends unless `keep`."""
    run = channel.publish_run
    if run is None:
        return
    if not keep:
        channel.publish_run = None
    first = run.first_seq
    stream = run.stream
    if first and stream is not None:
        run.first_seq = 0
        stream.log.when_durable(run.last_offset, partial(confirmed_range, channel, first, run.last_seq))


def confirm_select(channel: Channel, method: ConfirmSelect) -> None:
    """confirm.select: publishes are confirmed from now on (not on a transactional channel)."""
    if channel.tx is not None:
        raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")
    if channel.confirms is None:
        channel.confirms = ConfirmTracker()
    if not method.nowait:
        channel.connection.send_method(channel.number, ConfirmSelectOk())


def _publish_confirmed(channel: Channel, message: Message, queues: Sequence[Queue], seq: int) -> int:
    """A publish on a confirm channel: it reaches its queues only once the journal has it, so a
    nacked message is never enqueued nor delivered (see `HeldPublishes`). The journal position it
    waits for (0: none, -1: refused and nacked)."""
    vhost = channel.vhost
    position, placed = vhost.publish(message, queues)
    if position < 0:
        # The journal refuses (failed, or suspended by a full disk): nothing is enqueued.
        vhost.publish_nacked(placed)
        confirmed(channel, seq, False)
        return -1
    held = channel.held
    if not position:
        if held is None or not len(held):
            confirmed(channel, seq, _enqueue_all(channel, placed))
        else:
            held.hold((placed, seq), stored=True)  # behind earlier publishes, in order
        return 0
    if held is None:
        held = channel.held = HeldPublishes()
    waiting = held.hold((placed, seq))
    channel.connection.broker.journal.when_durable(
        position, partial(_journaled, channel, waiting, True), partial(_journaled, channel, waiting, False)
    )
    return position


def _journaled(channel: Channel, waiting: Held[HeldPublish], stored: bool) -> None:
    """A held publish is durable (or never will be): release what may go now, in publish order. Runs
    after the channel closed too: a message published and not nacked still reaches its queues."""
    held = channel.held
    assert held is not None
    for (placed, seq), ok in held.settle(waiting, stored):
        if ok:
            confirmed(channel, seq, _enqueue_all(channel, placed))
        else:
            channel.vhost.publish_nacked(placed)
            confirmed(channel, seq, False)


def _enqueue_all(channel: Channel, placed: list[Placed]) -> bool:
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
            channel.vhost.publish_nacked(((queue, entry),))
    return False


def confirmed(channel: Channel, seq: int, ack: bool = True) -> None:
    """Publish `seq` is settled (ack or nack); the frame goes out with the next flush."""
    confirms = channel.confirms
    if confirms is None or not channel.is_open:
        return
    parts = channel.confirm_parts
    if parts:
        waiting = parts.get(seq)
        if waiting is not None:
            # A publish to streams (and maybe queues): settled once every part is durable.
            waiting[0] -= 1
            waiting[1] = waiting[1] and ack
            if waiting[0] > 0:
                return
            del parts[seq]
            ack = bool(waiting[1])
    confirms.settle(seq, ack)
    if ack:
        # Counted per message as it is settled: acks may go out of order (a transient message
        # before an earlier persistent one), and a Prometheus counter must never step back.
        channel.n_confirmed += 1
    _flush_soon(channel)


def confirmed_range(channel: Channel, first: int, last: int, ack: bool = True) -> None:
    """Publishes `first`..`last` are settled alike (a publish run's, see PublishRun)."""
    confirms = channel.confirms
    if confirms is None or not channel.is_open:
        return
    confirms.settle_range(first, last, ack)
    if ack:
        channel.n_confirmed += last - first + 1
    _flush_soon(channel)


def _flush_soon(channel: Channel) -> None:
    """`flush_confirms` once the input batch is handled (once, however many settle meanwhile)."""
    if not channel.confirm_flush_pending:
        channel.confirm_flush_pending = True
        channel.connection.defer(partial(flush_confirms, channel))


def flush_confirms(channel: Channel) -> None:
    """Send the acks released since the last flush (one frame per run)."""
    channel.confirm_flush_pending = False
    confirms = channel.confirms
    if confirms is None or not channel.is_open:
        return
    number = channel.number
    for tag, multiple, ack in confirms.drain():
        channel.connection.write(
            encode_basic_ack(number, tag, multiple)
            if ack
            else encode_basic_nack(number, tag, multiple, False)
        )
