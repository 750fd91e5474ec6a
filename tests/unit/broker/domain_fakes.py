"""Small stand-ins for the domain-model tests: a consumer with a credit counter and message builders.

The consumer is the channel's side of the `Consumer` protocol reduced to counting; the broker's own
classes (VHost, Queue, routers) are always the real ones.
"""

from __future__ import annotations

from typing import Any

from ottermq.amqp.properties import EMPTY_PROPERTIES, BasicProperties, encode_properties
from ottermq.broker.message import Message, QueueEntry, message_priority
from ottermq.broker.queue import Queue
from ottermq.broker.ttl import now_ms, properties_ttl
from ottermq.broker.vhost import VHost


class FakeConsumer:
    """Takes up to `credit` messages and records them; records a broker cancel."""

    def __init__(self, tag: str, credit: int = 1_000_000, exclusive: bool = False, priority: int = 0) -> None:
        self.tag = tag
        self.no_ack = False
        self.exclusive = exclusive
        self.priority = priority
        self.credit = credit
        self.received: list[QueueEntry] = []
        # The content of each delivery, read when delivered (as a channel encodes it then).
        self.messages: list[Message] = []
        self.cancelled = False

    def has_credit(self) -> bool:
        return self.credit > 0

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        self.credit -= 1
        self.received.append(entry)
        self.messages.append(queue.content_of(entry))

    def cancelled_by_broker(self) -> None:
        self.cancelled = True

    def bodies(self) -> list[bytes]:
        return [message.body for message in self.messages]


def message(routing_key: str = "", body: bytes = b"", headers: dict[str, Any] | None = None) -> Message:
    """A message with only the headers property set (if given)."""
    properties = EMPTY_PROPERTIES if headers is None else encode_properties(BasicProperties(headers=headers))
    return Message("x", routing_key, properties, body)


def publish(vhost: VHost, exchange: str, routing_key: str, body: bytes = b"") -> list[str]:
    """Route a message as the channel does and enqueue it; return the names of the queues reached."""
    msg = message(routing_key, body)
    reached = vhost.route(exchange, routing_key, msg)
    vhost.publish_now(msg, reached)
    return sorted(queue.name for queue in reached)


def offer(queue: Queue, msg: Message) -> bool:
    """Add a transient message to `queue` alone, as a publish routed only there does (its content in
    the queue's content store, one reference); False when the queue refused it."""
    properties = msg.properties
    msg_id = queue.contents.put(msg, 1)
    entry = queue.new_entry(
        msg_id, msg.body_size, message_priority(properties), now_ms(), properties_ttl(properties)
    )
    return queue.enqueue(entry)


def content(queue: Queue, entry: QueueEntry) -> Message:
    """The content an entry of `queue` names."""
    return queue.content_of(entry)
