"""Dead lettering: republishing messages that leave a queue unconsumed, with the x-death history.

Strategy: a dead-lettered message is a new publish of a modified copy to the queue's
x-dead-letter-exchange, routed the normal way (so it is logged when persistent and reaches durable
queues): with the x-dead-letter-routing-key if set (the CC header is then dropped), else with its
original routing keys (routing key, CC and BCC). Headers are rewritten as RabbitMQ 3.10 writes them:
the x-death array gets an entry per (queue, reason) with a count, the newest first; the first death also
sets x-first-death-reason/-queue/-exchange; a per-message `expiration` moves into the entry as
`original-expiration`. Cycles are cut as RabbitMQ cuts them: a target queue already in the history is
skipped when no death since its last one was a reject. A missing dead-letter exchange drops the message.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from ottermq.amqp.properties import decode_properties, encode_properties
from ottermq.amqp.table import Long
from ottermq.broker.message import Message

if TYPE_CHECKING:
    from ottermq.broker.queue import Queue
    from ottermq.broker.vhost import VHost

# Reasons as RabbitMQ names them in x-death.
REJECTED: Final = "rejected"
EXPIRED: Final = "expired"
MAXLEN: Final = "maxlen"
DELIVERY_LIMIT: Final = "delivery_limit"
# RabbitMQ's dead_letter_strategy label of a classic queue's dead letters: sent to a dead-letter exchange,
# or dropped because the queue has none.
AT_MOST_ONCE: Final = "at_most_once"
DISABLED: Final = "disabled"


class DeadLettered:
    """Messages that left queues unconsumed since start, by reason and strategy (RabbitMQ's
    rabbitmq_global_messages_dead_lettered_<reason>_total): counted whether or not the dead-letter
    exchange routes them, and as `disabled` when the queue has none, as RabbitMQ counts them."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, reason: str, strategy: str, n: int) -> None:
        """Count `n` messages leaving for `reason` under `strategy`."""
        if n:
            key = (reason, strategy)
            self.counts[key] = self.counts.get(key, 0) + n

    def get(self, reason: str, strategy: str) -> int:
        """How many left for `reason` under `strategy`."""
        return self.counts.get((reason, strategy), 0)


def header_routes(headers: dict[str, Any] | None) -> list[str]:
    """The CC and BCC routing keys of a message's headers (string arrays; anything else is ignored)."""
    if not headers:
        return []
    routes: list[str] = []
    for key in ("CC", "BCC"):
        value = headers.get(key)
        if isinstance(value, list):
            routes.extend(item for item in value if isinstance(item, str))
    return routes


def dead_letter_copy(
    message: Message,
    reason: str,
    queue_name: str,
    dlx: str,
    dlx_routing_key: str | None,
    now: float,
) -> tuple[Message, list[str]]:
    """The copy to republish (as published to `dlx` with the first key) and the routing keys to use."""
    props = message.props
    headers: dict[str, Any] = dict(props.headers) if props.headers else {}
    # The keys the original was routed with: its routing key, then CC and BCC (BCC was stripped from
    # the headers at publish, so only CC can still be there).
    original_keys = [message.routing_key, *header_routes(headers)]
    info: dict[str, Any] = {
        "reason": reason,
        "queue": queue_name,
        "time": datetime.datetime.fromtimestamp(int(now), datetime.UTC),
        "exchange": message.exchange,
        "routing-keys": [message.routing_key, *header_routes(headers)],
    }
    if props.expiration is not None:
        info["original-expiration"] = props.expiration
    _update_x_death(headers, info)
    if dlx_routing_key is not None:
        keys = [dlx_routing_key]
        headers.pop("CC", None)
    else:
        keys = original_keys
    properties = encode_properties(dataclasses.replace(props, headers=headers, expiration=None))
    copy = Message(dlx, keys[0], properties, message.body, message.persistent)
    return copy, keys


def _update_x_death(headers: dict[str, Any], info: dict[str, Any]) -> None:
    deaths = headers.get("x-death")
    if not isinstance(deaths, list):
        # The first death also gets top-level headers of its own.
        headers.setdefault("x-first-death-reason", info["reason"])
        headers.setdefault("x-first-death-queue", info["queue"])
        headers.setdefault("x-first-death-exchange", info["exchange"])
        headers["x-death"] = [{"count": Long(1), **info}]
        return
    queue, reason = info["queue"], info["reason"]
    match: dict[str, Any] | None = None
    others: list[Any] = []
    for death in deaths:
        if (
            match is None
            and isinstance(death, dict)
            and death.get("queue") == queue
            and (death.get("reason") == reason)
        ):
            match = death
        else:
            others.append(death)
    if match is None:
        entry = {"count": Long(1), **info}
    else:
        count = match.get("count")
        entry = {**match, "count": Long(count + 1 if isinstance(count, int) else 1)}
    headers["x-death"] = [dict(sorted(entry.items())), *others]


def _is_cycle(queue_name: str, deaths: list[Any]) -> bool:
    """True when `queue_name` is in the history and no death up to its last one was a reject."""
    for index, death in enumerate(deaths):
        if isinstance(death, dict) and death.get("queue") == queue_name:
            return all(
                isinstance(item, dict) and item.get("reason") != REJECTED for item in deaths[: index + 1]
            )
    return False


def route_dead_letter(
    vhost: VHost, exchange_name: str, message: Message, keys: Sequence[str], reason: str
) -> list[Queue]:
    """The queues a dead-lettered copy reaches (none when the exchange is missing), cycles removed."""
    exchange = vhost.exchanges.get(exchange_name)
    if exchange is None:
        return []
    found: dict[Queue, None] = {}
    for key in keys:
        for queue in vhost.route(exchange, key, message):
            found[queue] = None
    queues = list(found)
    if reason != REJECTED and queues:
        deaths = (message.headers or {}).get("x-death")
        if isinstance(deaths, list):
            queues = [queue for queue in queues if not _is_cycle(queue.name, deaths)]
    return queues


def dead_letter(
    vhost: VHost,
    queue_name: str,
    exchange_name: str,
    routing_key: str | None,
    messages: Iterable[Message],
    reason: str,
    now: float,
) -> None:
    """Republish `messages` (leaving queue `queue_name` for `reason`) to the dead-letter exchange."""
    for message in messages:
        copy, keys = dead_letter_copy(message, reason, queue_name, exchange_name, routing_key, now)
        queues = route_dead_letter(vhost, exchange_name, copy, keys, reason)
        if queues:
            vhost.publish_now(copy, queues)


class DeadLetterTarget:
    """Where the dead letters of one queue go: x-dead-letter-exchange of `vhost`, with the
    x-dead-letter-routing-key if set."""

    __slots__ = ("exchange", "routing_key", "vhost")

    def __init__(self, vhost: VHost, exchange: str, routing_key: str | None) -> None:
        self.vhost = vhost
        self.exchange = exchange
        self.routing_key = routing_key

    def send(self, queue_name: str, messages: Iterable[Message], reason: str) -> None:
        """Republish `messages`, leaving queue `queue_name` for `reason`."""
        dead_letter(self.vhost, queue_name, self.exchange, self.routing_key, messages, reason, time.time())


def fresh_properties(properties: bytes, **changes: Any) -> bytes:
    """`properties` re-encoded with some fields replaced (used when a delivery must differ)."""
    return encode_properties(dataclasses.replace(decode_properties(properties), **changes))
