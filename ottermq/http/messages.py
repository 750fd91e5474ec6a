"""Publishing and getting messages over HTTP (publish, get, aliveness-test).

Strategy: a message published here takes the same steps as a basic.publish on a channel without
confirms: route in the vhost, log it when persistent and bound for durable queues, enqueue it. There is
no channel, so the channel-only publish features (direct reply-to, CC/BCC headers) do not apply, as a
management publish in RabbitMQ has no reply channel either. A get takes ready messages from the queue
and settles or requeues them at once, as RabbitMQ's ackmodes do; nothing stays unacknowledged. A
reject without requeue is a reject: the queue's dead-letter exchange takes the message, as in RabbitMQ.
Both are counted as RabbitMQ counts its API's (a channel of its own): the exchange's and the queues'
counters (object_stats.py), and the message counters of the vhost and of the broker (`totals`, the
broker's `message_counts`): a publish is received and confirmed, a get with ack_requeue_false is a get
without ack, the other modes a get with ack (never acknowledged: requeued or rejected).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.properties import BasicProperties, decode_properties, encode_properties
from ottermq.broker.content import UnreadableContent
from ottermq.broker.message import Message
from ottermq.http.interface import HttpError
from ottermq.server.rows import jsonable

if TYPE_CHECKING:
    from ottermq.broker.message import QueueEntry
    from ottermq.broker.queue import Queue
    from ottermq.broker.vhost import VHost

_PROPERTY_NAMES: Final = frozenset(f.name for f in dataclasses.fields(BasicProperties))
_INT_PROPERTIES: Final = frozenset({"delivery_mode", "priority", "timestamp"})
ACKMODES: Final = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")


def _bad(reason: str) -> HttpError:
    return HttpError(400, "bad_request", reason)


def encode_json_properties(properties: Any) -> bytes:
    """Raw content-header properties from the management API's "properties" object; 400 if invalid."""
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise _bad("properties must be an object")
    values: dict[str, Any] = {}
    for name, value in properties.items():
        if name not in _PROPERTY_NAMES:
            raise _bad(f"unknown property '{name}'")
        if name == "headers":
            if not isinstance(value, dict):
                raise _bad("property 'headers' must be an object")
        elif name in _INT_PROPERTIES:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                raise _bad(f"property '{name}' must be a non-negative integer")
            if name != "timestamp" and value > 255:
                raise _bad(f"property '{name}' must be at most 255")
        elif not isinstance(value, str):
            raise _bad(f"property '{name}' must be a string")
        elif len(value.encode()) > 255:
            raise _bad(f"property '{name}' is longer than 255 bytes")
        values[name] = value
    try:
        return encode_properties(BasicProperties(**values))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _bad(f"properties cannot be encoded: {exc}") from None


def decode_payload(payload: Any, encoding: Any) -> bytes:
    """The body bytes of a publish request ("string" or "base64")."""
    if not isinstance(payload, str):
        raise _bad("payload must be a string")
    if encoding in (None, "string"):
        return payload.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise _bad("payload is not valid base64") from None
    raise _bad("payload_encoding must be 'string' or 'base64'")


def _count(vhost: VHost, totals: dict[str, int] | None, counter: str, n: int = 1) -> None:
    """Add `n` to message counter `counter` of the vhost and the broker (`totals`)."""
    vhost.message_counts[counter] = vhost.message_counts.get(counter, 0) + n
    if totals is not None:
        totals[counter] = totals.get(counter, 0) + n


def publish(
    vhost: VHost,
    exchange_name: str,
    routing_key: str,
    properties: bytes,
    body: bytes,
    totals: dict[str, int] | None = None,
) -> bool:
    """Route and enqueue one message; True when at least one queue took it. AMQP errors propagate (404
    for a missing exchange, 403 for an internal one)."""
    exchange = vhost.exchange_for_publish(exchange_name)
    message = Message(exchange_name, routing_key, properties, body)
    queues = vhost.route(exchange, routing_key, message)
    exchange.stats.publish_in += 1
    exchange.stats.publish_out += len(queues)
    _count(vhost, totals, "routed" if queues else "unroutable_dropped")
    _count(vhost, totals, "confirmed")
    if not queues:
        return False
    _, placed = vhost.publish(message, queues)
    taken = False
    for queue, entry in placed:
        taken = queue.enqueue(entry) or taken
    return taken


def get(
    queue: Queue,
    count: int,
    ackmode: str,
    encoding: str,
    truncate: int | None,
    vhost: VHost | None = None,
    totals: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Take up to `count` ready messages and settle (or requeue) them as `ackmode` says; counted in the
    queue's counters, and in the vhost's and `totals` when `vhost` is given."""
    if ackmode not in ACKMODES:
        raise _bad(f"ackmode must be one of {', '.join(ACKMODES)}")
    if encoding not in ("auto", "base64"):
        raise _bad("encoding must be 'auto' or 'base64'")
    entries: list[QueueEntry] = []
    messages: list[Message] = []
    while len(entries) < count:
        entry = queue.get()
        if entry is None:
            break
        try:
            messages.append(queue.content_of(entry))
        except UnreadableContent as exc:
            queue.unreadable(entry, exc)  # dropped, logged and counted: the next one is returned instead
            continue
        entries.append(entry)
    rows = []
    for index, (entry, message) in enumerate(zip(entries, messages, strict=True)):
        body = message.body
        shown = body if truncate is None else body[:truncate]
        text: str | None = None
        if encoding == "auto":
            try:
                text = shown.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        props = decode_properties(message.properties) if message.properties else BasicProperties()
        rows.append(
            {
                "payload_bytes": len(body),
                "redelivered": entry.redelivered,
                "exchange": message.exchange,
                "routing_key": message.routing_key,
                "message_count": queue.ready_count + len(entries) - index - 1,
                "properties": {k: jsonable(v) for k, v in dataclasses.asdict(props).items() if v is not None},
                "payload": text if text is not None else base64.b64encode(shown).decode("ascii"),
                "payload_encoding": "string" if text is not None else "base64",
            }
        )
    _count_get(queue, entries, count, ackmode, vhost, totals)
    if entries:
        if ackmode.endswith("requeue_true"):
            queue.requeue(entries)
        else:
            queue.settle(entries, "ack" if ackmode.startswith("ack") else "reject")
    return rows


def _count_get(
    queue: Queue,
    entries: list[QueueEntry],
    count: int,
    ackmode: str,
    vhost: VHost | None,
    totals: dict[str, int] | None,
) -> None:
    stats = queue.stats
    redelivered = sum(1 for entry in entries if entry.redelivered)
    no_ack = ackmode == "ack_requeue_false"
    if no_ack:
        stats.get_no_ack += len(entries)
    else:
        stats.get += len(entries)
    stats.redeliver += redelivered
    empty = 1 if len(entries) < count else 0  # the get that found the queue empty ended the loop
    stats.get_empty += empty
    if vhost is not None:
        counter = "delivered_get_auto_ack" if no_ack else "delivered_get_manual_ack"
        _count(vhost, totals, counter, len(entries))
        _count(vhost, totals, "redelivered", redelivered)
        _count(vhost, totals, "get_empty", empty)
