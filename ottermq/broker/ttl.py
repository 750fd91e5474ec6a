"""Message TTL: the `expiration` property, x-message-ttl, and the absolute deadline of a queue entry.

Strategy: a TTL becomes an absolute deadline (milliseconds since the epoch, wall clock) the moment the
message is enqueued: the earlier of publish time + `expiration` and enqueue time + the queue's
x-message-ttl (publish and enqueue are the same instant here). Absolute deadlines mean a message that
comes back from the log after a restart expires when it would have, not a full TTL later. Expiry itself
happens at the queue head, as in RabbitMQ (queue.py, on every queue: a per-message `expiration` needs no
declared feature), plus a once-a-second sweep from `Broker.tick` (queue_expiry.py). A TTL of 0 means
"deliver now or never": the entry is handed to a consumer that can take it at once, and expires otherwise.
"""

from __future__ import annotations

import re
import time
from typing import Final

from ottermq.amqp.constants import PRECONDITION_FAILED
from ottermq.amqp.errors import ChannelError
from ottermq.amqp.properties import FLAG_EXPIRATION, peek_expiration
from ottermq.broker.arguments import MAX_EXPIRY

_LEADING_INT: Final = re.compile(r"[+-]?\d+")
# The expiration flag in the first octet of the raw property flags.
_EXPIRATION_BIT: Final = FLAG_EXPIRATION >> 8


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch (deadlines must survive a restart)."""
    return int(time.time() * 1000)


def parse_expiration(value: str, class_id: int = 0, method_id: int = 0) -> int:
    """The `expiration` property in milliseconds; 406 worded as RabbitMQ's for anything else.

    RabbitMQ reads the string as Erlang's string:to_integer does (a leading integer), then refuses
    leftovers, negative values and values above 2^32 - 1.
    """
    match = _LEADING_INT.match(value)
    if match is None:
        raise _invalid(value, "no_integer", class_id, method_id)
    number = int(match.group())
    rest = value[match.end() :]
    if rest:
        raise _invalid(value, f'{{leftover_string,"{rest}"}}', class_id, method_id)
    if number < 0:
        raise _invalid(value, f"{{value_negative,{number}}}", class_id, method_id)
    if number > MAX_EXPIRY:
        raise _invalid(value, f"{{value_too_large,{number},{MAX_EXPIRY}}}", class_id, method_id)
    return number


def _invalid(value: str, reason: str, class_id: int, method_id: int) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"PRECONDITION_FAILED - invalid expiration '{value}': {reason}",
        class_id,
        method_id,
    )


def deadline(now: int, message_ttl: int | None, queue_ttl: int | None) -> int:
    """The absolute deadline of an entry enqueued at `now` (0: it never expires)."""
    if message_ttl is None:
        return 0 if queue_ttl is None else now + queue_ttl
    if queue_ttl is not None and queue_ttl < message_ttl:
        return now + queue_ttl
    return now + message_ttl


def properties_ttl(properties: bytes) -> int | None:
    """The `expiration` in ms of raw content-header properties, or None (also for a malformed one)."""
    if not (properties and properties[0] & _EXPIRATION_BIT):
        return None
    raw = peek_expiration(properties)
    if raw is None:
        return None
    try:
        return parse_expiration(raw)
    except ChannelError:
        return None
