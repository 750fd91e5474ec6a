"""The exchange.* and queue.* methods of a channel (and access.request): permission checks, then the vhost.

Strategy: each handler checks the user's permissions (`guard`), asks the vhost to do the work (which
raises RabbitMQ's errors) and answers. A declare or bind that journaled a durable entity is answered only
once the journal has it on disk (`reply_when_durable`). An empty queue name means the queue the channel
declared last (`Channel.queue_name`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from ottermq.amqp.constants import INTERNAL_ERROR
from ottermq.amqp.methods import (
    AccessRequest,
    AccessRequestOk,
    BasicCancel,
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
)
from ottermq.broker import exchange_types

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel


def reply_when_durable(channel: Channel, reply: Method, before: int) -> None:
    """Send `reply`, but if the operation journaled anything (its first position would have been
    `before`), only once that is on disk (declare-ok of durable entities); 541 if the journal fails."""
    journal = channel.connection.broker.journal
    position = journal.next_position - 1
    if position < before or position <= journal.durable_position:
        channel.connection.send_method(channel.number, reply)
        return
    journal.when_durable(
        position,
        partial(_send_if_open, channel, reply),
        partial(channel.fail, INTERNAL_ERROR, "INTERNAL_ERROR - the journal failed", 0, 0),
    )


def _send_if_open(channel: Channel, reply: Method) -> None:
    if channel.is_open:
        channel.connection.send_method(channel.number, reply)


def access_request(channel: Channel, method: AccessRequest) -> None:
    """access.request (deprecated realms): always granted, as RabbitMQ does."""
    channel.connection.send_method(channel.number, AccessRequestOk(1))


def exchange_declare(channel: Channel, method: ExchangeDeclare) -> None:
    """exchange.declare."""
    before = channel.connection.broker.journal.next_position
    if not method.passive and method.exchange:
        exchange_types.lookup(method.type).check()  # 503 for an unknown type comes before 403
        channel.guard.check_exchange_declare(method, method.exchange in channel.vhost.exchanges)
    channel.vhost.declare_exchange(
        method.exchange,
        method.type,
        passive=method.passive,
        durable=method.durable,
        auto_delete=method.auto_delete,
        internal=method.internal,
        arguments=method.arguments or {},
    )
    if not method.nowait:
        reply_when_durable(channel, ExchangeDeclareOk(), before)


def exchange_delete(channel: Channel, method: ExchangeDelete) -> None:
    """exchange.delete."""
    channel.guard.check_method(method)
    channel.vhost.delete_exchange(method.exchange, if_unused=method.if_unused)
    if not method.nowait:
        channel.connection.send_method(channel.number, ExchangeDeleteOk())


def exchange_bind(channel: Channel, method: ExchangeBind) -> None:
    """exchange.bind (exchange to exchange)."""
    before = channel.connection.broker.journal.next_position
    channel.guard.check_method(method)
    channel.guard.check_binding_topic(channel.vhost.exchanges, method.source, method.routing_key)
    channel.vhost.bind_exchange(method.destination, method.source, method.routing_key, method.arguments or {})
    if not method.nowait:
        reply_when_durable(channel, ExchangeBindOk(), before)


def exchange_unbind(channel: Channel, method: ExchangeUnbind) -> None:
    """exchange.unbind."""
    channel.guard.check_method(method)
    channel.guard.check_binding_topic(channel.vhost.exchanges, method.source, method.routing_key)
    channel.vhost.unbind_exchange(
        method.destination, method.source, method.routing_key, method.arguments or {}
    )
    if not method.nowait:
        channel.connection.send_method(channel.number, ExchangeUnbindOk())


def queue_declare(channel: Channel, method: QueueDeclare) -> None:
    """queue.declare; the queue becomes the channel's last declared one."""
    before = channel.connection.broker.journal.next_position
    queue = channel.vhost.declare_queue(
        method.queue,
        passive=method.passive,
        durable=method.durable,
        exclusive=method.exclusive,
        auto_delete=method.auto_delete,
        arguments=method.arguments or {},
        owner=channel.connection,
        check=channel.guard.queue_declare_check(method.arguments or {}),
    )
    channel.last_queue = queue.name
    if not method.nowait:
        reply_when_durable(
            channel, QueueDeclareOk(queue.name, queue.ready_count, queue.consumer_count), before
        )


def queue_bind(channel: Channel, method: QueueBind) -> None:
    """queue.bind."""
    before = channel.connection.broker.journal.next_position
    routing_key = method.routing_key
    if not method.queue and not routing_key:
        routing_key = channel.queue_name("")
    channel.guard.check_method(method, channel.queue_name(method.queue))
    channel.guard.check_binding_topic(channel.vhost.exchanges, method.exchange, routing_key)
    channel.vhost.bind_queue(
        channel.queue_name(method.queue),
        method.exchange,
        routing_key,
        method.arguments or {},
        channel.connection,
    )
    if not method.nowait:
        reply_when_durable(channel, QueueBindOk(), before)


def queue_unbind(channel: Channel, method: QueueUnbind) -> None:
    """queue.unbind."""
    routing_key = method.routing_key
    if not method.queue and not routing_key:
        routing_key = channel.queue_name("")
    channel.guard.check_method(method, channel.queue_name(method.queue))
    channel.guard.check_binding_topic(channel.vhost.exchanges, method.exchange, routing_key)
    channel.vhost.unbind_queue(
        channel.queue_name(method.queue),
        method.exchange,
        routing_key,
        method.arguments or {},
        channel.connection,
    )
    channel.connection.send_method(channel.number, QueueUnbindOk())


def queue_purge(channel: Channel, method: QueuePurge) -> None:
    """queue.purge."""
    name = channel.queue_name(method.queue)
    channel.guard.check_method(method, name)
    count = channel.vhost.purge_queue(name, channel.connection)
    if not method.nowait:
        channel.connection.send_method(channel.number, QueuePurgeOk(count))


def queue_delete(channel: Channel, method: QueueDelete) -> None:
    """queue.delete; this channel's own consumers of the queue hear of it after delete-ok."""
    name = channel.queue_name(method.queue)
    channel.guard.check_method(method, name)
    # RabbitMQ answers queue.delete-ok before the deleting channel hears of its own consumers'
    # cancellation (other channels are told at once); clients' test suites (kombu) rely on it.
    cancelled: list[str] = []
    channel.deferred_cancels = cancelled
    try:
        count = channel.vhost.delete_queue(
            name,
            if_unused=method.if_unused,
            if_empty=method.if_empty,
            owner=channel.connection,
        )
        if not method.nowait:
            channel.connection.send_method(channel.number, QueueDeleteOk(count))
    finally:
        channel.deferred_cancels = None
        if cancelled and channel.is_open and channel.connection.consumer_cancel_notify:
            for tag in cancelled:
                channel.connection.send_method(channel.number, BasicCancel(tag, True))
