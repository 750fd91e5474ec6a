"""Topic permissions, as RabbitMQ 3.10 has them (rabbit_auth_backend_internal, rabbit_channel).

Strategy: a user may hold, per vhost and exchange, a write and a read regular expression for routing
keys. They are asked only when that exchange is a topic exchange (a topic permission on another type is
kept and never asked, as in RabbitMQ): basic.publish needs its routing key to match `write` (after the
write permission on the exchange, the lookup and the internal check); queue.bind, queue.unbind,
exchange.bind and exchange.unbind need the binding's routing key to match `read` on the source exchange
(after the write/read permission checks, and only when the source exists). Without a topic permission on
the exchange everything is allowed. Patterns match as the other permissions do (unanchored search, ""
stands for "^$"), after `{username}` and `{vhost}` were replaced by the connection's user and vhost (as
RabbitMQ's expand_topic_permission: a plain text replacement, nothing escaped). Refusals are 403 with
RabbitMQ's text. The registry (`AccessControl.topic_permissions`) keeps the patterns as set; the
connection's `Guard` compiles the expanded ones it needs and forgets them whenever access changes.
"""

from __future__ import annotations

import re
from typing import Final

from ottermq.amqp.constants import ACCESS_REFUSED
from ottermq.amqp.errors import ChannelError

# The exchange type topic permissions apply to.
TOPIC: Final = "topic"
# The variables RabbitMQ expands in a topic permission for AMQP 0-9-1 connections.
USERNAME_VARIABLE: Final = "{username}"
VHOST_VARIABLE: Final = "{vhost}"


class TopicPermission:
    """A user's write and read routing-key patterns on one exchange of a vhost, as set."""

    __slots__ = ("read", "write")

    def __init__(self, write: str, read: str) -> None:
        self.write = write
        self.read = read

    def __repr__(self) -> str:
        return f"TopicPermission({self.write!r}, {self.read!r})"

    def pattern(self, access: str) -> str:
        """The pattern of `access` ("write" or "read") as set."""
        return self.write if access == "write" else self.read


def check_pattern(pattern: str) -> None:
    """ValueError with RabbitMQ's wording when `pattern` is not a valid regular expression."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regular expression '{pattern}' is invalid: {exc}") from None


def expand(pattern: str, user: str, vhost: str) -> str:
    """`pattern` with "" read as "^$" and the variables replaced, as RabbitMQ expands it."""
    return (pattern or "^$").replace(USERNAME_VARIABLE, user).replace(VHOST_VARIABLE, vhost)


def compiled(pattern: str, user: str, vhost: str) -> re.Pattern[str] | None:
    """The expanded pattern compiled; None when the expansion made it invalid (it then matches
    nothing: a name with regex syntax in it cannot widen a permission)."""
    try:
        return re.compile(expand(pattern, user, vhost))
    except re.error:
        return None


def refused(routing_key: str, exchange: str, vhost: str, user: str) -> ChannelError:
    """RabbitMQ's 403 for a routing key the topic permission does not allow."""
    return ChannelError(
        ACCESS_REFUSED,
        f"ACCESS_REFUSED - access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' "
        f"refused for user '{user}'",
    )
