"""Publishes that need their properties read: expiration, direct reply-to, CC and BCC headers.

Strategy: the channel routes a message through here only when its raw property flags show `headers`,
`reply_to` or `expiration` (one bit test on the hot path); everything else never decodes its properties.
Here: a malformed `expiration` gets RabbitMQ's 406 (every queue expires messages at its head, so a valid
one needs nothing more); `reply_to: amq.rabbitmq.reply-to` is rewritten to the channel's reply
address (406 without a reply consumer); the `CC` and `BCC` headers add routing keys (sender-selected
distribution) and BCC is removed before anyone sees the message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.methods import BasicPublish
from ottermq.amqp.properties import FLAG_EXPIRATION, FLAG_HEADERS, FLAG_REPLY_TO, encode_properties
from ottermq.broker import reply_to
from ottermq.broker.deadletter import header_routes
from ottermq.broker.message import Message
from ottermq.broker.ttl import parse_expiration

if TYPE_CHECKING:
    from ottermq.broker.channel import Channel
    from ottermq.broker.exchange import Exchange
    from ottermq.broker.queue import Queue

# The flags that send a publish through `route`, in the first octet of the raw property flags.
SPECIAL_FLAGS: Final = (FLAG_HEADERS | FLAG_REPLY_TO | FLAG_EXPIRATION) >> 8

# reply_to and expiration always need the properties decoded; headers only when CC or BCC may be there.
_DECODE_FLAGS: Final = (FLAG_REPLY_TO | FLAG_EXPIRATION) >> 8
_CC: Final = b"\x02CC"
_BCC: Final = b"\x03BCC"

_PUBLISH_IDS: Final = (BasicPublish.CLASS_ID, BasicPublish.METHOD_ID)


def route(channel: Channel, exchange: Exchange, message: Message) -> tuple[Message, Sequence[Queue]]:
    """The message as it will be delivered (maybe with rewritten properties) and the queues it reaches."""
    properties = message.properties
    if not properties[0] & _DECODE_FLAGS and _CC not in properties and _BCC not in properties:
        # Only headers, and none named CC or BCC (table keys are length-prefixed): nothing to do here.
        return message, channel.vhost.route(exchange, message.routing_key, message)
    props = message.props
    changes: dict[str, Any] = {}
    if props.reply_to == reply_to.REPLY_QUEUE:
        changes["reply_to"] = reply_to.reply_address(channel)
    keys: list[str] = [message.routing_key]
    headers = props.headers
    if headers and ("CC" in headers or "BCC" in headers):
        keys.extend(header_routes(headers))
        if "BCC" in headers:
            changes["headers"] = {key: value for key, value in headers.items() if key != "BCC"}
    if props.expiration is not None:
        parse_expiration(props.expiration, *_PUBLISH_IDS)
    if changes:
        message = _with_properties(message, encode_properties(dataclasses.replace(props, **changes)))
    vhost = channel.vhost
    if len(keys) == 1:
        queues: Sequence[Queue] = vhost.route(exchange, keys[0], message)
    else:
        found: dict[Queue, None] = {}
        for key in dict.fromkeys(keys):
            for queue in vhost.route(exchange, key, message):
                found[queue] = None
        queues = tuple(found)
    return message, queues


def _with_properties(message: Message, properties: bytes) -> Message:
    return Message(message.exchange, message.routing_key, properties, message.body, message.persistent)
