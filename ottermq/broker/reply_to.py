"""Direct reply-to (amq.rabbitmq.reply-to): RPC replies without declaring a reply queue.

Strategy: as in RabbitMQ, a client consumes (no-ack) from the pseudo-queue `amq.rabbitmq.reply-to` and
publishes requests with `reply_to` set to that name; the broker rewrites it to
`amq.rabbitmq.reply-to.<token>`, and a reply published to the default exchange with that routing key goes
straight to the consumer. The token names a `ReplyQueue` registered in the vhost's default-exchange router
under that name, so replies are routed by the ordinary lookup; its `enqueue` writes basic.deliver on the
requesting channel at once and keeps nothing (replies are never queued, acknowledged or logged). The
registration ends with the consumer (basic.cancel, channel or connection closed); later replies are
unroutable.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Final

from ottermq.amqp.constants import NOT_ALLOWED, PRECONDITION_FAILED
from ottermq.amqp.errors import AMQPConnectionError, ChannelError
from ottermq.amqp.frames import encode_deliver
from ottermq.amqp.methods import BasicConsume, BasicConsumeOk
from ottermq.broker.exchange import DEFAULT_EXCHANGE, DefaultRouter
from ottermq.broker.message import QueueEntry
from ottermq.broker.queue import Queue

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel

REPLY_QUEUE: Final = "amq.rabbitmq.reply-to"
REPLY_PREFIX: Final = REPLY_QUEUE + "."


class ReplyQueue(Queue):
    """The destination of replies to one channel's direct reply-to consumer."""

    __slots__ = ("channel", "tag")

    def __init__(self, channel: Channel, tag: str) -> None:
        token = base64.urlsafe_b64encode(os.urandom(18)).decode("ascii")
        vhost = channel.connection.vhost
        super().__init__(REPLY_PREFIX + token, vhost.name if vhost is not None else "/")
        self.channel = channel
        self.tag = tag
        if vhost is not None:
            self.contents = vhost.contents

    def enqueue(self, entry: QueueEntry) -> bool:
        """Deliver the reply now (no-ack, never queued); dropped if the channel is closing."""
        channel = self.channel
        contents = self.contents
        message = contents.get(entry.msg_id)
        contents.release(entry.msg_id)
        if not channel.is_open:
            return True
        connection = channel.connection
        connection.sent = True
        channel.transport.write(
            encode_deliver(
                channel.number,
                self.tag,
                channel.unacked.next_tag(),
                False,
                message.exchange,
                message.routing_key,
                message.properties,
                message.body,
                connection.frame_max,
            )
        )
        return True


def _router(channel: Channel) -> DefaultRouter:
    router = channel.vhost.exchanges[DEFAULT_EXCHANGE].router
    assert isinstance(router, DefaultRouter)
    return router


def consume(channel: Channel, method: BasicConsume, tag: str) -> None:
    """basic.consume on amq.rabbitmq.reply-to: become the channel's reply consumer (errors as RabbitMQ)."""
    if tag in channel.consumers or (channel.reply is not None and channel.reply.tag == tag):
        raise AMQPConnectionError(NOT_ALLOWED, f"NOT_ALLOWED - attempt to reuse consumer tag '{tag}'")
    if not method.no_ack:
        raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
    if channel.reply is not None:
        raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - reply consumer already set")
    reply = ReplyQueue(channel, tag)
    _router(channel).add_queue(reply)
    channel.reply = reply
    if not method.nowait:
        channel.connection.send_method(channel.number, BasicConsumeOk(tag))


def cancel(channel: Channel, tag: str) -> bool:
    """basic.cancel: True when `tag` was the reply consumer (now gone)."""
    reply = channel.reply
    if reply is None or reply.tag != tag:
        return False
    release(channel)
    return True


def release(channel: Channel) -> None:
    """The reply consumer ends: replies to its name are unroutable from now on."""
    reply = channel.reply
    if reply is None:
        return
    channel.reply = None
    # Tokens are random and never reused, so the name is this consumer's alone.
    _router(channel).remove_queue(reply.name)


def reply_address(channel: Channel) -> str:
    """What `reply_to: amq.rabbitmq.reply-to` is rewritten to (406 without a reply consumer)."""
    reply = channel.reply
    if reply is None:
        raise ChannelError(PRECONDITION_FAILED, "PRECONDITION_FAILED - fast reply consumer does not exist")
    return reply.name
